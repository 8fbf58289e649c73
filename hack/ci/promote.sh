#!/bin/sh
# A release tag vX.Y.Z builds nothing: it adds the tag to the images its commit was built as
# (pushed by the master pipeline that deployed them to ppd) and writes their digests to
# promote.env for deploy-prd. Fails, saying why, when that commit was never built.
set -eu
: "${REGISTRY:?}" "${CI_COMMIT_SHA:?}" "${CI_COMMIT_TAG:?}"
: > promote.env
for pair in test-app:APP_DIGEST testapp-operator:OPERATOR_DIGEST; do
  image=${pair%%:*} variable=${pair#*:}
  if ! digest=$(docker buildx imagetools inspect "$REGISTRY/$image:$CI_COMMIT_SHA" --format '{{.Manifest.Digest}}'); then
    echo "error: $REGISTRY/$image:$CI_COMMIT_SHA does not exist: commit $CI_COMMIT_SHA was never built" \
      "by a pipeline of master (the one that deploys ppd). Tag a commit that ppd ran." >&2
    exit 1
  fi
  tagged=$(docker buildx imagetools inspect "$REGISTRY/$image:$CI_COMMIT_TAG" --format '{{.Manifest.Digest}}' 2>/dev/null || true)
  if [ -z "$tagged" ]; then
    docker buildx imagetools create --tag "$REGISTRY/$image:$CI_COMMIT_TAG" "$REGISTRY/$image@$digest"
  elif [ "$tagged" != "$digest" ]; then
    echo "error: $REGISTRY/$image:$CI_COMMIT_TAG already names $tagged, not $digest" >&2
    exit 1
  fi
  echo "$REGISTRY/$image:$CI_COMMIT_TAG = $digest (no rebuild)"
  echo "$variable=$digest" >> promote.env
done
