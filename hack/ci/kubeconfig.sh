#!/bin/sh
# The kubeconfig a deploy, rollback or install job uses, printed as a path; every way to fail
# fails the job with one line (the caller assigns, never `export X=$(...)`, which would hide it).
#   KUBECONFIG set (a File variable of the environment, or the offline proof): it must be a
#     non-empty file; an empty or missing one is an error, never "no kubeconfig";
#   otherwise: GKE through Workload Identity (python -m testapp_operator.delivery.gcp, in the operator image).
set -eu
if [ -n "${KUBECONFIG:-}" ]; then
  [ -f "$KUBECONFIG" ] && [ -s "$KUBECONFIG" ] \
    || { echo "error: KUBECONFIG=$KUBECONFIG is not a non-empty file (a File variable of this environment?)" >&2; exit 1; }
  printf '%s\n' "$KUBECONFIG"
  exit 0
fi
path="${TMPDIR:-/tmp}/kubeconfig"
python -m testapp_operator.delivery.gcp kubeconfig "$path" >/dev/null
[ -s "$path" ] || { echo "error: GKE credentials: no kubeconfig was written to $path" >&2; exit 1; }
printf '%s\n' "$path"
