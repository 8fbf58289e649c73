#!/usr/bin/env bash
# `make test`'s lint and pytest, in three lanes side by side (2 cores: the lanes mostly wait on
# control planes, rollouts and the real node, or build images):
#   1. the linters, then every suite that needs no cluster (images, pipeline jobs, unit, contract)
#   2. the chaos and security suites and the plugin's (tests/cluster/test_cli.py), on a control
#      plane of their own (.cluster-test-chaos/: the API-server restart must not pull the ground
#      from under the other lanes), then the operator suite once more, the operator
#      authenticated as its ServiceAccount
#   3. every other cluster suite, and the real node's, on the shared test control plane
# Arguments go to every pytest run (e.g. --durations=30). Lanes 1 and 2 write to .test-logs/,
# shown when all have ended; lane 3 prints as it goes.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=.venv/bin/pytest
mkdir -p .test-logs

(
  make --no-print-directory lint && "$pytest" -m "not cluster" -p no:cacheprovider "$@"
) >.test-logs/standalone.log 2>&1 &
standalone=$!
(
  export TESTAPP_CLUSTER_DIR=$PWD/.cluster-test-chaos
  "$pytest" -m cluster -p no:cacheprovider tests/chaos tests/security tests/cluster/test_cli.py "$@"
  chaos=$?
  echo "== The operator suite again, the operator authenticated as its ServiceAccount (k8s/operator RBAC)"
  "$pytest" tests/cluster/test_operator.py --operator-identity=serviceaccount -p no:cacheprovider "$@"
  exit $((chaos || $?))
) >.test-logs/chaos.log 2>&1 &
chaos=$!
trap 'kill "$standalone" "$chaos" 2>/dev/null' EXIT

echo "== The cluster suites (beside them: .test-logs/standalone.log, .test-logs/chaos.log)"
"$pytest" -m cluster --ignore=tests/chaos --ignore=tests/security --ignore=tests/cluster/test_cli.py "$@"
cluster=$?
wait "$chaos"
chaos=$?
wait "$standalone"
alone=$?
trap - EXIT
echo "== The chaos, security and plugin suites, then the ServiceAccount run (.test-logs/chaos.log)"
cat .test-logs/chaos.log
echo "== The linters and the suites that need no cluster (.test-logs/standalone.log)"
cat .test-logs/standalone.log
echo "== make test: cluster suites exit $cluster, chaos, security and plugin exit $chaos, the others exit $alone"
exit $((cluster || chaos || alone))
