#!/bin/sh
# Sign the promoted release images with cosign (sign-prd): APP_DIGEST and OPERATOR_DIGEST, from
# promote-prd's dotenv report, in REGISTRY (the release repository; registry-login.sh first).
# cosign runs in its own image (COSIGN_IMAGE, pinned by digest) on the job's Docker engine; the
# docker:cli job cannot mount its files into it (they live in another container), so the
# registry login and any credential are copied in with `docker cp`.
#   keyless (default): the job's SIGSTORE_ID_TOKEN (id_tokens, aud sigstore); the certificate
#     names this project's .gitlab-ci.yml at refs/tags/vX.Y.Z (public Sigstore: GitLab.com).
#   COSIGN_KEY=gcpkms://...: a Cloud KMS key, reached as the release builder through Workload
#     Identity Federation (an external_account credential over GITLAB_OIDC_TOKEN; no key file).
# A failed signature fails the job, and deploy-prd and install-operator need this job.
set -eu
: "${REGISTRY:?}" "${COSIGN_IMAGE:?}" "${APP_DIGEST:?}" "${OPERATOR_DIGEST:?}"
fail() { echo "error: sign: $*" >&2; exit 1; }
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
cp "${DOCKER_CONFIG:-$HOME/.docker}/config.json" "$config/config.json" \
  || fail "no docker login to hand to cosign (registry-login.sh runs first)"
if [ -n "${COSIGN_KEY:-}" ]; then
  : "${GCP_WIF_PROVIDER:?}" "${GITLAB_OIDC_TOKEN:?}" "${BUILDER_SERVICE_ACCOUNT:?}"
  printf '%s' "$GITLAB_OIDC_TOKEN" > "$config/oidc-token"
  cat > "$config/google.json" <<JSON
{"type": "external_account", "audience": "//iam.googleapis.com/$GCP_WIF_PROVIDER",
 "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
 "token_url": "https://sts.googleapis.com/v1/token",
 "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/$BUILDER_SERVICE_ACCOUNT:generateAccessToken",
 "credential_source": {"file": "/cosign/oidc-token"}}
JSON
  how="--key $COSIGN_KEY" google="GOOGLE_APPLICATION_CREDENTIALS=/cosign/google.json"
else
  [ -n "${SIGSTORE_ID_TOKEN:-}" ] || fail "SIGSTORE_ID_TOKEN is not set: the job needs id_tokens: SIGSTORE_ID_TOKEN (aud: sigstore), or set COSIGN_KEY"
  how="" google="COSIGN_KEYLESS=1"
fi
for pair in "test-app@$APP_DIGEST" "testapp-operator@$OPERATOR_DIGEST"; do
  image=${pair%%@*} digest=${pair#*@}
  # shellcheck disable=SC2086 # $how is a list of flags
  container=$(docker create -e DOCKER_CONFIG=/cosign -e "$google" -e SIGSTORE_ID_TOKEN \
    "$COSIGN_IMAGE" sign --yes $how "$REGISTRY/$image@$digest")
  docker cp "$config/." "$container:/cosign"
  docker start --attach "$container" || { docker rm "$container" >/dev/null; fail "cosign could not sign $REGISTRY/$image@$digest"; }
  docker rm "$container" >/dev/null
  echo "signed $REGISTRY/$image@$digest"
done
