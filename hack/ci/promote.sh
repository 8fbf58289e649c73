#!/bin/sh
# A release tag vX.Y.Z builds nothing: it adds the tag to the images its commit was built as and
# writes their digests to promote.env for sign-prd, deploy-prd and install-operator. Only a
# commit that is on master AND was deployed to ppd is promoted; else one line says why:
#   1. `git merge-base --is-ancestor` against master (the job clones with GIT_DEPTH 0);
#   2. ppd's successful deployments (GitLab API, CI_JOB_TOKEN) include the commit;
#   3. REGISTRY (the release repository: only protected deploy branches write it) has the images.
set -eu
: "${REGISTRY:?}" "${CI_COMMIT_SHA:?}" "${CI_COMMIT_TAG:?}"
fail() { echo "error: promote $CI_COMMIT_TAG: $*" >&2; exit 1; }
sha=$CI_COMMIT_SHA

git fetch --quiet origin +refs/heads/master:refs/remotes/origin/master \
  || fail "cannot fetch master from origin to check that $sha is on it"
git merge-base --is-ancestor "$sha" refs/remotes/origin/master \
  || fail "commit $sha is not on master: tag a commit of master that ppd ran"

deployments="${CI_API_V4_URL:?}/projects/${CI_PROJECT_ID:?}/deployments?environment=ppd&status=success&order_by=id&sort=desc&per_page=100"
ppd=$(wget -qO- --header "JOB-TOKEN: ${CI_JOB_TOKEN:?}" "$deployments") \
  || fail "cannot read ppd's deployments from the GitLab API (does the job token have deployments read access?)"
case "$ppd" in
  *"\"sha\":\"$sha\""*) echo "commit $sha is on master and was deployed to ppd" ;;
  *) fail "commit $sha was never deployed to ppd (not among its last 100 successful deployments)" ;;
esac

"$(dirname "$0")/registry-login.sh"
: > promote.env
for pair in test-app:APP_DIGEST testapp-operator:OPERATOR_DIGEST; do
  image=${pair%%:*} variable=${pair#*:}
  digest=$(docker buildx imagetools inspect "$REGISTRY/$image:$sha" --format '{{.Manifest.Digest}}') \
    || fail "$REGISTRY/$image:$sha does not exist: commit $sha was never built by a pipeline of master (the one that deploys ppd)"
  tagged=$(docker buildx imagetools inspect "$REGISTRY/$image:$CI_COMMIT_TAG" --format '{{.Manifest.Digest}}' 2>/dev/null || true)
  if [ -z "$tagged" ]; then
    docker buildx imagetools create --tag "$REGISTRY/$image:$CI_COMMIT_TAG" "$REGISTRY/$image@$digest"
  elif [ "$tagged" != "$digest" ]; then
    fail "$REGISTRY/$image:$CI_COMMIT_TAG already names $tagged, not $digest"
  fi
  echo "$REGISTRY/$image:$CI_COMMIT_TAG = $digest (no rebuild)"
  echo "$variable=$digest" >> promote.env
done
