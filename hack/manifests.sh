#!/usr/bin/env bash
# Render one environment's TestAppRelease to stdout (`make manifests`, `make deploy`).
#   hack/manifests.sh                    k8s/overlays/$ENV with spec.image=$IMAGE, spec.tag=$TAG
#   hack/manifests.sh --deployed-fields  only the fields a deploy owns (name, env, image, tag,
#                                        digest when DIGEST is set):
#                                        what creates a release that does not exist yet
# Reads ENV, TAG, DIGEST, IMAGE (checked by the Makefile's guards) and KUBECTL; writes nothing but stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENV:?ENV is required}" "${TAG:?TAG is required}" "${IMAGE:?IMAGE is required}"

json() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

if [[ "${1:-}" == --deployed-fields ]]; then
  cat <<YAML
apiVersion: testapp.dev/v1
kind: TestAppRelease
metadata:
  name: test-app-$ENV
spec:
  env: $ENV
  image: $(json "$IMAGE")
  tag: $(json "$TAG")
YAML
  if [[ -n "${DIGEST:-}" ]]; then echo "  digest: $(json "$DIGEST")"; fi
  exit 0
fi

# The image and tag are fields of the TestAppRelease, not a container image, so kustomize's
# `images:` cannot set them: a throw-away kustomization patches the overlay instead.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/release.json" <<JSON
[{"op": "add", "path": "/spec/image", "value": $(json "$IMAGE")},
 {"op": "add", "path": "/spec/tag", "value": $(json "$TAG")}]
JSON
cat > "$tmp/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: ["$(realpath --relative-to="$tmp" "k8s/overlays/$ENV")"]
patches: [{path: release.json, target: {group: testapp.dev, kind: TestAppRelease}}]
YAML
"${KUBECTL:-kubectl}" kustomize "$tmp"
