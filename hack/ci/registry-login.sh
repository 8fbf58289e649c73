#!/bin/sh
# Log docker in to Artifact Registry as BUILDER_SERVICE_ACCOUNT (the release builder on protected
# refs, the branch builder otherwise), from the job's GitLab id_token through Workload Identity
# Federation (no key). POSIX sh and busybox wget only: the docker:cli image has neither bash,
# curl nor jq. Every failure fails the job with one line; REGISTRY_LOGIN=skip (the offline proof,
# whose loopback registry has no authentication) is the only way not to log in.
set -eu
fail() { echo "error: registry login: $*" >&2; exit 1; }
if [ "${REGISTRY_LOGIN:-}" = skip ]; then echo "REGISTRY_LOGIN=skip: no registry login"; exit 0; fi
[ -n "${GCP_WIF_PROVIDER:-}" ] || fail "GCP_WIF_PROVIDER is not set (docs/delivery.md, GitLab variables)"
[ -n "${GITLAB_OIDC_TOKEN:-}" ] || fail "GITLAB_OIDC_TOKEN is not set: the job needs id_tokens: GITLAB_OIDC_TOKEN"
[ -n "${BUILDER_SERVICE_ACCOUNT:-}" ] || fail "BUILDER_SERVICE_ACCOUNT is empty: set GCP_BUILDER_SERVICE_ACCOUNT and GCP_RELEASE_BUILDER_SERVICE_ACCOUNT"
: "${GCP_REGION:?}"
field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"; }
scope=https://www.googleapis.com/auth/cloud-platform
sts=$(wget -qO- --header 'Content-Type: application/x-www-form-urlencoded' --post-data \
  "audience=//iam.googleapis.com/${GCP_WIF_PROVIDER}&grant_type=urn:ietf:params:oauth:grant-type:token-exchange&requested_token_type=urn:ietf:params:oauth:token-type:access_token&scope=${scope}&subject_token_type=urn:ietf:params:oauth:token-type:jwt&subject_token=${GITLAB_OIDC_TOKEN}" \
  "${GCP_STS_URL:-https://sts.googleapis.com/v1/token}") \
  || fail "Google STS refused the id_token (check the provider's attribute condition)"
federated=$(printf '%s' "$sts" | field access_token)
[ -n "$federated" ] || fail "Google STS answered without an access token"
iam=$(wget -qO- --header "Authorization: Bearer ${federated}" --header 'Content-Type: application/json' \
  --post-data "{\"scope\": [\"${scope}\"], \"lifetime\": \"1800s\"}" \
  "${GCP_IAM_CREDENTIALS_URL:-https://iamcredentials.googleapis.com/v1}/projects/-/serviceAccounts/${BUILDER_SERVICE_ACCOUNT}:generateAccessToken") \
  || fail "IAM Credentials refused to impersonate $BUILDER_SERVICE_ACCOUNT (its workloadIdentityUser binding)"
token=$(printf '%s' "$iam" | field accessToken)
[ -n "$token" ] || fail "IAM Credentials answered without an access token for $BUILDER_SERVICE_ACCOUNT"
printf '%s' "$token" | docker login -u oauth2accesstoken --password-stdin "https://${GCP_REGION}-docker.pkg.dev" \
  || fail "docker login to ${GCP_REGION}-docker.pkg.dev failed"
