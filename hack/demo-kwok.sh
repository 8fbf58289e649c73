#!/usr/bin/env bash
# The demo on kwok alone (no real node on this machine): Pods are simulated, the example image
# is never pulled. hack/demo.sh runs this after saying why the real node is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
step() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

step "Release all four environments (one TestAppRelease each, from k8s/overlays, as CI's first deploy)"
for env in dev stg ppd prd; do
  run make -s deploy ENV="$env" TAG=0.1.0 IMAGE=registry.example.com/test-app CAUSE="demo: first release"
done
run kubectl wait tar test-app-dev test-app-stg test-app-ppd test-app-prd \
  --for=jsonpath='{.status.phase}'=Ready --timeout=120s
run kubectl get tar

step "Roll dev forward to a new tag, as CI does (make deploy ENV=dev TAG=0.2.0)"
run kubectl testapp deploy dev --tag 0.2.0 --cause "demo: roll dev forward"

step "Roll dev back by pinning revision 1 (spec.revision is a pin, not a one-shot command)"
run kubectl patch tar test-app-dev --type=merge -p '{"spec":{"revision":1}}'
run kubectl wait tar test-app-dev --for=jsonpath='{.status.revision}'=1 --timeout=60s
run kubectl wait tar test-app-dev --for=jsonpath='{.status.phase}'=Ready --timeout=60s
run kubectl testapp history dev

step "Ship a broken image to stg: its Pods never get Ready, the operator rolls back by itself"
run kubectl patch tar test-app-stg --type=merge \
  -p '{"spec":{"tag":"broken-1","progressDeadlineSeconds":15}}'
run kubectl wait tar test-app-stg --for=jsonpath='{.status.phase}'=Degraded --timeout=90s
run kubectl testapp history stg
run kubectl get events -n default --field-selector involvedObject.name=test-app-stg,reason=AutoRolledBack

step "What runs where"
run kubectl get tar
run kubectl testapp status

cat <<TXT

Everything is still running. Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/$BIN:\$PATH
  kubectl get tar                          # every environment at a glance
  kubectl edit tar test-app-dev            # change the tag, the replicas, or clear spec.revision
  kubectl testapp history dev              # revisions, causes and outcomes
  kubectl describe tar test-app-stg        # conditions; events: kubectl get events -n default
  curl -s localhost:8081/metrics | grep testapp_   # the operator's metrics
  tail -f .cluster/logs/operator.log       # one log line per decision
Stop everything (control plane and operator): make cluster-down
TXT
