#!/bin/sh
# Log docker in to Artifact Registry as the builder service account, from the job's GitLab
# id_token through Workload Identity Federation (no key). POSIX sh and busybox wget only: the
# docker:cli image has neither bash, curl nor jq. No GCP_WIF_PROVIDER (a local proof against a
# loopback registry): nothing to do.
set -eu
[ -n "${GCP_WIF_PROVIDER:-}" ] || { echo "GCP_WIF_PROVIDER not set: no registry login"; exit 0; }
: "${GITLAB_OIDC_TOKEN:?the job needs id_tokens: GITLAB_OIDC_TOKEN}" "${GCP_BUILDER_SERVICE_ACCOUNT:?}"
field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"; }
scope=https://www.googleapis.com/auth/cloud-platform
federated=$(wget -qO- --header 'Content-Type: application/x-www-form-urlencoded' --post-data \
  "audience=//iam.googleapis.com/${GCP_WIF_PROVIDER}&grant_type=urn:ietf:params:oauth:grant-type:token-exchange&requested_token_type=urn:ietf:params:oauth:token-type:access_token&scope=${scope}&subject_token_type=urn:ietf:params:oauth:token-type:jwt&subject_token=${GITLAB_OIDC_TOKEN}" \
  https://sts.googleapis.com/v1/token | field access_token)
[ -n "$federated" ] || { echo "error: Google STS refused the id_token (check the provider's attribute condition)" >&2; exit 1; }
wget -qO- --header "Authorization: Bearer ${federated}" --header 'Content-Type: application/json' \
  --post-data "{\"scope\": [\"${scope}\"], \"lifetime\": \"1800s\"}" \
  "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${GCP_BUILDER_SERVICE_ACCOUNT}:generateAccessToken" \
  | field accessToken | docker login -u oauth2accesstoken --password-stdin "https://${GCP_REGION}-docker.pkg.dev"
