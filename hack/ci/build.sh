#!/bin/sh
# Build one image once per commit: `hack/ci/build.sh app|operator` (GitLab jobs build-app,
# build-operator). The Dockerfile's test stage runs lint and unit tests inside the build; BuildKit
# reuses the dependency layers from a registry cache. Pushes REGISTRY/<image>:$CI_COMMIT_SHA when
# PUSH=true and writes <image>'s digest to build.env (a dotenv report the deploy jobs read).
# A commit already pushed is not built again (tags are immutable; a retry or a later pipeline of
# the same commit reuses it).
set -eu
case "${1:-}" in
  app) image=test-app dockerfile=Dockerfile.app variable=APP_DIGEST ;;
  operator) image=testapp-operator dockerfile=Dockerfile.operator variable=OPERATOR_DIGEST ;;
  *) echo "usage: hack/ci/build.sh app|operator" >&2; exit 2 ;;
esac
: "${REGISTRY:?}" "${CI_COMMIT_SHA:?}"
ref="$REGISTRY/$image:$CI_COMMIT_SHA"
digest() { docker buildx imagetools inspect "$1" --format '{{.Manifest.Digest}}'; }

if [ "${PUSH:-false}" = true ] && existing=$(digest "$ref" 2>/dev/null); then
  echo "$ref exists ($existing): built by an earlier pipeline of this commit, not rebuilt"
  echo "$variable=$existing" > build.env
  exit 0
fi
docker buildx inspect ci >/dev/null 2>&1 || docker buildx create --name ci --driver docker-container --use
if [ "$PUSH" = true ]; then
  output="--push --tag $ref --cache-to type=registry,ref=$CACHE_REGISTRY/$image:cache,mode=max"
else
  output="--output type=cacheonly"  # a fork's MR or a scheduled pipeline: build and test only
fi
# shellcheck disable=SC2086 # $output is a list of flags
docker buildx build --file "$dockerfile" --build-arg GIT_SHA="$CI_COMMIT_SHA" \
  --build-arg APP_VERSION="${CI_COMMIT_TAG:-$CI_COMMIT_SHORT_SHA}" \
  --build-arg SOURCE_URL="${CI_PROJECT_URL:-}" \
  --cache-from "type=registry,ref=$CACHE_REGISTRY/$image:cache" $output .
if [ "$PUSH" = true ]; then
  echo "$variable=$(digest "$ref")" | tee build.env
else
  : > build.env
fi
