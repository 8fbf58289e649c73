#!/usr/bin/env bash
# `make test-fresh`: the README's first command on a new machine, on a copy of this one.
#
# A new machine has only its image's packages (hack/fresh/machine-image-packages.txt) and none of
# the project's caches. This script makes such a machine out of this one without touching it: an
# overlay of the root file system in a mount namespace of its own, in which every Debian package
# installed since the image (by hand, by an earlier run, by another project) is purged with what
# it alone pulled in, and the project's caches (~/.cache/testapp, podman's storage) are empty.
# Go's module and build caches stay, so the control plane is linked, not compiled for 15 minutes.
# In it, a fresh clone of this checkout runs `make demo` (which installs the host tools, builds
# the base image and both images, starts the control plane and the real node, serves a release
# in every environment), then what `make test` adds (its host programs, the linters,
# gitlab-ci-local, the contract tests and the pipeline's job tests), then `make cluster-down`. The real node is machine-wide (its bridge,
# nftables tables, cgroups): no other cluster may hold it meanwhile.
#
# Every step is timed into $FRESH_LOG (default .fresh/fresh-machine.log); exit 0 when it passed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
log=${FRESH_LOG:-$repo/.fresh/fresh-machine.log}
lock=/run/lock/testapp-real-node.json

[ "$(id -u)" = 0 ] || { echo "make test-fresh needs root (a mount namespace and apt-get)" >&2; exit 1; }
if [ -f "$lock" ] && kill -0 "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$lock")" 2>/dev/null; then
  echo "make test-fresh: the real node of this machine is in use ($lock): make cluster-down first" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/testapp-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{upper,overlay,root,clone,cache,containers} "$(dirname "$log")"
: >"$log"
echo "make test-fresh: a copy of this machine with only its image's packages in $work; log: $log"

# Inside the namespace: the overlay root, what a chroot needs, and the empty caches. The clone,
# the caches and podman's storage are directories of the real disk (containerd and podman mount
# overlays of their own, which cannot sit on an overlay).
env -u TESTAPP_CLUSTER_DIR -u KUBECONFIG -u TESTAPP_REGISTRY -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
  unshare --mount --pid --fork --propagation private bash -euo pipefail -c '
  work=$1 repo=$2 log=$3
  root=$work/root
  mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  for tmp in run tmp; do mount -t tmpfs tmpfs "$root/$tmp"; done
  mkdir -p "$root/run/lock" "$root/root/.cache/testapp" "$root/var/lib/containers" "$root/fresh"
  mount --bind "$work/cache" "$root/root/.cache/testapp"
  mount --bind "$work/containers" "$root/var/lib/containers"
  mount --bind "$work/clone" "$root/fresh"
  git clone --quiet "$repo" "$work/clone/checkout"
  cp "$repo/hack/fresh/machine-image-packages.txt" "$root/fresh/image-packages.txt"
  chroot "$root" /bin/bash -euo pipefail -c "
    export HOME=/root PATH=\$PATH:/usr/local/go/bin DEBIAN_FRONTEND=noninteractive
    step() { echo \"== \$(date -u +%T) \$*\"; }
    step purge: the Debian packages installed since the machine image
    extra=\$(comm -23 <(apt-mark showmanual | sed s/:.*// | sort -u) <(grep -v ^# /fresh/image-packages.txt | sort -u))
    echo \"purging: \$extra\"
    [ -z \"\$extra\" ] || apt-get purge -y -qq --autoremove \$extra >/dev/null
    for tool in nft podman buildah runc mmdebstrap rsync catatonit; do
      ! command -v \$tool >/dev/null || { echo \"\$tool is still here after the purge\"; exit 1; }
    done
    cd /fresh/checkout
    trap \"make cluster-down >/dev/null 2>&1 || true\" EXIT  # the real node changes the host: put it back
    step make demo
    started=\$SECONDS
    make demo
    step make demo passed in \$((SECONDS - started)) s
    step \"what make test installs beyond the demo: its host programs, the linters, gitlab-ci-local\"
    started=\$SECONDS
    make tools-test lint node-modules
    .venv/bin/pytest -q -p no:cacheprovider tests/contract tests/pipeline/test_pipeline_jobs.py
    step the make test set-up passed in \$((SECONDS - started)) s
    step done
  "
' fresh "$work" "$repo" "$log" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
echo "make test-fresh: $([ "$status" = 0 ] && echo passed || echo "FAILED (exit $status)"); log: $log"
exit "$status"
