#!/usr/bin/env bash
# `make demo`: the whole product on the local control plane, step by step.
# Starts the cluster and the operator, releases all four environments, rolls dev forward and
# back, lets stg roll back by itself from a broken image, runs two canaries on ppd (one promoted,
# one aborted by Prometheus's numbers), and leaves everything running.
# On the real node (hack/cluster/realnode.py) the Pods run the test-app image built here and
# answer through their Services; where the node cannot run, the demo says why and uses kwok.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
CLUSTER="$BIN/python hack/cluster/localcluster.py"
step() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

export KUBECONFIG="$($CLUSTER kubeconfig)"
export PATH="$PWD/$BIN:$PATH"   # `kubectl testapp` is the kubectl-testapp plugin in the venv

step "Install the TestAppRelease CRD and start the operator"
run $BIN/python -m testapp_operator.delivery.install crd
$CLUSTER operator

if ! reason=$($CLUSTER node); then
  echo "No real node here, the demo runs on kwok (Pods are simulated): $reason"
  exec hack/demo-kwok.sh
fi

# GET a path through an environment's Service (its ClusterIP, routed by kube-proxy).
answer() {
  local ip
  ip=$(kubectl get service "test-app-$1" -n "test-app-$1" -o jsonpath='{.spec.clusterIP}')
  printf '\033[2m$ curl http://%s/%s   # test-app-%s\033[0m\n' "$ip" "$2" "$1"
  curl -s --max-time 3 "http://$ip/$2"; echo
}
# Wait until an environment's Service answers /version with the given version.
wait_version() {
  local ip deadline=$((SECONDS + 60))
  ip=$(kubectl get service "test-app-$1" -n "test-app-$1" -o jsonpath='{.spec.clusterIP}')
  until curl -s --max-time 2 "http://$ip/version" | grep -q "\"version\": *\"$2\""; do
    ((SECONDS < deadline)) || { echo "test-app-$1 does not answer version $2" >&2; return 1; }
    sleep 0.5
  done
}

step "Build the test-app image (its tests run inside the build) and push it to the loopback registry"
# --fault: also the build whose / answers 500 (tag fault-500), the one a canary analysis aborts.
images=$($BIN/python hack/cluster/appimages.py push --tags 0.1.0 0.2.0 --fault)
IMAGE=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["repository"])' <<<"$images")
echo "$images"

releases=(test-app-dev test-app-stg test-app-ppd test-app-prd)
if [ -n "$(kubectl get tar "${releases[@]}" --ignore-not-found -o name)" ]; then
  step "A demo ran on this cluster before: its releases go first, so this one starts from revision 1"
  run kubectl delete tar "${releases[@]}" --ignore-not-found
  deadline=$((SECONDS + 180))
  until [ -z "$(kubectl get namespace "${releases[@]}" --ignore-not-found -o name)" ]; do
    ((SECONDS < deadline)) || { echo "the namespaces of the last demo are still terminating" >&2; exit 1; }
    sleep 1
  done
fi

step "Release all four environments on the real node (their namespaces select it)"
run $CLUSTER place "${releases[@]}"
for env in dev stg ppd prd; do
  make -s --no-print-directory manifests ENV=$env TAG=0.1.0 IMAGE="$IMAGE" | kubectl apply -f -
done
run kubectl wait tar "${releases[@]}" \
  --for=jsonpath='{.status.phase}'=Ready --timeout=300s
run kubectl get pods -A -l app.kubernetes.io/name=test-app -o wide
for env in dev stg ppd prd; do wait_version $env 0.1.0; answer $env version; done

step "Roll dev forward to 0.2.0, as CI does (make deploy ENV=dev TAG=0.2.0)"
run kubectl testapp deploy dev --tag 0.2.0 --cause "demo: roll dev forward"
wait_version dev 0.2.0; answer dev version

step "Roll dev back by pinning revision 1 (spec.revision is a pin, not a one-shot command)"
run kubectl testapp rollback dev --to-revision 1
wait_version dev 0.1.0; answer dev version
run kubectl testapp history dev

step "Ship a broken build to stg: it exits at start, the operator rolls back by itself"
run kubectl patch tar test-app-stg --type=merge \
  -p '{"spec":{"tag":"broken-crash","progressDeadlineSeconds":20}}'
echo "Waiting for the kubelet to report the broken Pods' state ..."
deadline=$((SECONDS + 90))
until kubectl get pods -n test-app-stg -l app.kubernetes.io/version=broken-crash \
    -o jsonpath='{..state.waiting.reason}' | grep -q CrashLoopBackOff; do
  ((SECONDS < deadline)) || { echo "no CrashLoopBackOff in test-app-stg" >&2; exit 1; }
  sleep 1
done
run kubectl get pods -n test-app-stg
run kubectl testapp status -o wide
run kubectl wait tar test-app-stg --for=jsonpath='{.status.phase}'=Degraded --timeout=120s
run kubectl get pods -n test-app-stg
run kubectl testapp history stg
run kubectl testapp status
run kubectl get events -n default --field-selector involvedObject.name=test-app-stg,reason=AutoRolledBack
run kubectl get events -n test-app-stg --field-selector reason=BackOff
wait_version stg 0.1.0; answer stg version

step "A canary on ppd, judged by the real Prometheus: 0.2.0 is promoted, a build answering 500 is aborted"
run kubectl patch tar test-app-ppd --type=merge --patch-file hack/demo-canary.yaml
run kubectl wait tar test-app-ppd --for=jsonpath='{.status.phase}'=Ready --timeout=120s
# Requests to / while the canaries run, so the analysis has numbers (bounded: 6 minutes at most).
ip=$(kubectl get service test-app-ppd -n test-app-ppd -o jsonpath='{.spec.clusterIP}')
(
  deadline=$((SECONDS + 360))
  until ((SECONDS >= deadline)); do curl -s -o /dev/null --max-time 1 "http://$ip/" || true; sleep 0.1; done
) &
traffic=$!
trap 'kill $traffic 2>/dev/null || true' EXIT
run kubectl testapp deploy ppd --tag 0.2.0 --cause "demo: a canary that passes"
run kubectl testapp status -o wide
run kubectl get events -n default --field-selector involvedObject.name=test-app-ppd,reason=AnalysisMeasured
run kubectl testapp deploy ppd --tag fault-500 --cause "demo: a build answering 500" --no-wait
run kubectl wait tar test-app-ppd --for=jsonpath='{.status.canary.phase}'=Aborted --timeout=180s
kill $traffic 2>/dev/null || true
run kubectl testapp status -o wide
run kubectl testapp history ppd
run kubectl get events -n default --field-selector involvedObject.name=test-app-ppd,reason=AbortCanary
wait_version ppd 0.2.0; answer ppd version

cat <<TXT

Everything is still running. Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/$BIN:\$PATH
  kubectl get pods -A -o wide               # real Pods on node $(hostname), simulated ones on kwok-node-0
  kubectl logs -n test-app-dev deploy/test-app-dev     # the app's own JSON access log
  kubectl exec -n test-app-dev deploy/test-app-dev -- python -c 'print(1)'
  kubectl testapp history stg               # the broken build, Failed, and the rollback
  kubectl testapp history ppd               # a canary promoted, one aborted on its analysis
  tail -f .cluster/logs/kubelet.log         # the node: kubelet, containerd, kube-proxy logs beside it
Stop everything (control plane, node, operator): make cluster-down
TXT
