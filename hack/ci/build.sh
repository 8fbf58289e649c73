#!/bin/sh
# Build one image once per commit: `hack/ci/build.sh app|operator` (GitLab jobs build-app,
# build-operator; `make push` with Docker). The Dockerfile's test stage runs lint and unit tests
# inside the build.
#
# PUSH=true: log in as BUILDER_SERVICE_ACCOUNT, reuse BuildKit's layers from CACHE_REGISTRY,
# push REGISTRY/<image>:$CI_COMMIT_SHA and write its digest to build.env (a dotenv report the
# deploy jobs read). A commit already in REGISTRY is not built again: only this pipeline's
# builder can write there (the release repository: the protected deploy branches), and its tags
# are immutable. Anything else (a fork's MR, a schedule, an API call): build and test with no
# login and no registry cache, so no credential is needed.
set -eu
case "${1:-}" in
  app) image=test-app dockerfile=Dockerfile.app variable=APP_DIGEST ;;
  operator) image=testapp-operator dockerfile=Dockerfile.operator variable=OPERATOR_DIGEST ;;
  *) echo "usage: hack/ci/build.sh app|operator" >&2; exit 2 ;;
esac
: "${REGISTRY:?}" "${CI_COMMIT_SHA:?}" "${BUILDKIT_IMAGE:?}"
ref="$REGISTRY/$image:$CI_COMMIT_SHA"
digest() { docker buildx imagetools inspect "$1" --format '{{.Manifest.Digest}}'; }

: > build.env
if [ "${PUSH:-false}" = true ]; then
  : "${CACHE_REGISTRY:?}"
  "$(dirname "$0")/registry-login.sh"
  if existing=$(digest "$ref" 2>/dev/null); then
    echo "$ref exists ($existing): built by an earlier pipeline of this commit, not rebuilt"
    echo "$variable=$existing" > build.env
    exit 0
  fi
  cache="type=registry,ref=$CACHE_REGISTRY/$image:cache"
  output="--push --tag $ref --cache-from $cache --cache-to $cache,mode=max"
else
  echo "PUSH=${PUSH:-false}: build and test only, no registry login, no registry cache"
  output="--output type=cacheonly"
fi
docker buildx inspect ci >/dev/null 2>&1 \
  || docker buildx create --name ci --driver docker-container --driver-opt "image=$BUILDKIT_IMAGE" --use
# shellcheck disable=SC2086 # $output is a list of flags
docker buildx build --file "$dockerfile" --build-arg GIT_SHA="$CI_COMMIT_SHA" \
  --build-arg APP_VERSION="${APP_VERSION:-${CI_COMMIT_TAG:-${CI_COMMIT_SHORT_SHA:-$CI_COMMIT_SHA}}}" \
  --build-arg SOURCE_URL="${CI_PROJECT_URL:-}" $output .
if [ "${PUSH:-false}" = true ]; then
  echo "$variable=$(digest "$ref")" | tee build.env
fi
