#!/usr/bin/env bash
# `make test`'s pytest part: the suites that need no cluster run beside the ones that do (on 2
# cores one side mostly builds images and runs gitlab-ci-local, the other mostly waits on the
# control plane and the real node), then the operator suite once more with the operator
# authenticated as its ServiceAccount. Arguments go to every pytest run (e.g. --durations=30).
# The side without a cluster writes to .test-logs/standalone.log, shown when both have ended.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=.venv/bin/pytest
mkdir -p .test-logs
log=.test-logs/standalone.log

"$pytest" -m "not cluster" -p no:cacheprovider "$@" >"$log" 2>&1 &
standalone=$!
trap 'kill "$standalone" 2>/dev/null' EXIT

echo "== The suites that use the control plane (those that need none run beside them: $log)"
"$pytest" -m cluster "$@"
cluster=$?
echo "== The operator suite again, the operator authenticated as its ServiceAccount (k8s/operator RBAC)"
"$pytest" tests/cluster/test_operator.py --operator-identity=serviceaccount -p no:cacheprovider "$@"
identity=$?
wait "$standalone"
alone=$?
trap - EXIT
echo "== The suites that need no cluster ($log)"
cat "$log"
echo "== make test: cluster suites exit $cluster, ServiceAccount run exit $identity, the others exit $alone"
exit $((cluster || identity || alone))
