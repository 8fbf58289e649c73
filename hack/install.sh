#!/usr/bin/env bash
# Install or upgrade what the operator needs, with server-side apply under one field manager.
#   hack/install.sh crd [DIR]   the CRDs of kustomization DIR (default crds/), wait Established
#   hack/install.sh operator    k8s/operator with OPERATOR_IMAGE@OPERATOR_DIGEST, wait for rollout
# (`make install-crd`, `make install-operator`, `make run`, the demo and the tests' CRD fixture.)
#
# --force-conflicts: a CRD applied client-side (`kubectl apply -f crds/`, what most people type)
# or by another manager owns .spec.versions, and a plain server-side apply stops on that conflict.
# This install is the owner of record, so it takes those fields over, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBECTL=${KUBECTL:-kubectl}
FIELD_MANAGER=testapp-install
apply() { "$KUBECTL" apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" "$@"; }

# Managers other than ours that own fields of an object (status writers excluded).
other_managers() {
  "$KUBECTL" get "$1" --ignore-not-found \
    -o jsonpath='{range .metadata.managedFields[*]}{.manager}{"\t"}{.subresource}{"\n"}{end}' \
    | awk -F'\t' -v ours="$FIELD_MANAGER" '$1 != ours && $2 == "" { print $1 }' | sort -u | paste -sd, -
}

install_crds() {
  local dir=${1:-crds} crd others
  for crd in $("$KUBECTL" kustomize "$dir" | "$KUBECTL" apply --dry-run=client -o name -f -); do
    others=$(other_managers "$crd")
    if [[ -n "$others" ]]; then
      echo "$crd: taking over the fields set by ${others} (applied client-side or by another manager)"
    fi
  done
  apply -k "$dir"
  "$KUBECTL" wait --for=condition=Established --timeout=60s \
    $("$KUBECTL" kustomize "$dir" | "$KUBECTL" apply --dry-run=client -o name -f -)
}

install_operator() {
  : "${OPERATOR_IMAGE:?OPERATOR_IMAGE is required}" "${OPERATOR_DIGEST:?OPERATOR_DIGEST is required}"
  install_crds crds
  # The image is set here, never in k8s/operator: no placeholder can be applied by mistake.
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cat > "$tmp/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: ["$(realpath --relative-to="$tmp" k8s/operator)"]
images: [{name: testapp-operator, newName: "$OPERATOR_IMAGE", digest: "$OPERATOR_DIGEST"}]
YAML
  echo "Installing the operator $OPERATOR_IMAGE@$OPERATOR_DIGEST"
  apply -k "$tmp"
  "$KUBECTL" -n testapp-system rollout status deployment/testapp-operator --timeout="${TIMEOUT:-300}s"
}

case "${1:-}" in
  crd) install_crds "${2:-crds}" ;;
  operator) install_operator ;;
  *) echo "usage: hack/install.sh crd [DIR] | operator" >&2; exit 2 ;;
esac
