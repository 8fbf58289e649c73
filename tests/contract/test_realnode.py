"""The real node's configuration and its host bookkeeping, without starting anything. Not in
tests/unit: the operator image's build runs tests/unit, which has no testapp_dev or hack/."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import tomllib
from pathlib import Path

from testapp_dev import localcluster, scripts

realnode = localcluster.realnode
# The launcher's parts, loaded beside it.
components = scripts.load("components", "hack/cluster/components.py")
state = scripts.load("state", "hack/cluster/state.py")

PATHS = realnode.NodePaths(Path("/work/x/.cluster"))
PORTS = realnode.NodePorts(kubelet=1, kubelet_healthz=2, proxy_healthz=3, proxy_metrics=4, stream=5)


def containerd() -> dict:
    text = realnode.containerd_config(PATHS, PORTS, Path("/cache/shim"), "/usr/sbin/runc")
    return tomllib.loads(text)


def test_containerd_keeps_its_files_and_sockets_under_the_node_dir() -> None:
    config = containerd()

    for path in (config["root"], config["state"], config["grpc"]["address"]):
        assert path.startswith("/work/x/.cluster/node/")
    runc = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert runc["options"]["Root"] == "/work/x/.cluster/node/runc"
    assert runc["runtime_path"] == "/cache/shim"


def test_containerd_works_without_cap_sys_resource_or_systemd() -> None:
    runtime = containerd()["plugins"]["io.containerd.cri.v1.runtime"]

    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert runtime["netns_mounts_under_state_dir"] is True


def test_the_sandbox_image_is_the_locally_made_one() -> None:
    images = containerd()["plugins"]["io.containerd.cri.v1.images"]

    assert images["pinned_images"]["sandbox"] == realnode.PAUSE_IMAGE


def test_kubelet_runs_on_cgroup_v1_with_cgroupfs_and_makes_no_iptables_chains() -> None:
    config = realnode.kubelet_config(PATHS, PORTS, Path("/pki"))

    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["makeIPTablesUtilChains"] is False
    assert config["address"] == "127.0.0.1"
    assert config["authorization"]["mode"] == "Webhook"
    assert config["containerRuntimeEndpoint"] == f"unix://{PATHS.socket}"


def test_pods_stay_on_the_machine() -> None:
    bridge = realnode.cni_config(PATHS)["plugins"][0]

    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"].startswith(str(PATHS.root))


def test_kube_proxy_uses_nftables_and_leaves_conntrack_settings_alone() -> None:
    config = realnode.kube_proxy_config(PATHS, PORTS, PATHS.state, "vm")

    assert config["mode"] == "nftables"
    assert all(value in (0, "0s") for value in config["conntrack"].values())
    assert config["healthzBindAddress"].startswith("127.0.0.1:")


def test_placement_tolerates_the_real_nodes_taint_and_selects_its_label() -> None:
    annotations = realnode.placement()
    taint = realnode.kubelet_config(PATHS, PORTS, Path("/pki"))["registerWithTaints"][0]
    (toleration,) = json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"])

    assert annotations["scheduler.alpha.kubernetes.io/node-selector"] == "testapp.dev/node=real"
    assert (toleration["key"], toleration["value"], toleration["effect"]) == (
        taint["key"],
        taint["value"],
        taint["effect"],
    )


def test_footprint_differences_name_what_was_left_and_what_changed() -> None:
    before = realnode.Footprint(sysctls={"kernel.panic": "0"}, links=["eth0", "lo"])
    after = realnode.Footprint(sysctls={"kernel.panic": "10"}, links=["eth0", "lo", "testapp0"])

    assert before.differences(before) == []
    assert before.differences(after) == [
        "sysctls kernel.panic: 0 -> 10",
        "links left behind: testapp0",
    ]


def test_the_pause_image_archive_names_the_pinned_image(tmp_path: Path) -> None:
    archive = tmp_path / "pause.tar"

    realnode.pause_image_archive(archive)

    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest["Config"]))
        layer = tar.extractfile(manifest["Layers"][0]).read()
    assert manifest["RepoTags"] == [realnode.PAUSE_IMAGE]
    assert config["config"]["Entrypoint"] == ["/pause", "-P"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]


def test_the_node_can_be_switched_off_and_says_so(monkeypatch) -> None:
    monkeypatch.setenv("TESTAPP_REAL_NODE", "0")

    assert (
        realnode.unavailable_reason(PATHS) == "the real node is switched off (TESTAPP_REAL_NODE=0)"
    )


def test_a_node_owned_by_another_cluster_sends_this_one_to_kwok(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("TESTAPP_REAL_NODE", raising=False)
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 0)
    monkeypatch.setattr(realnode, "LOCK", tmp_path / "lock.json")
    other = realnode.NodePaths(tmp_path / "other")
    realnode.hold_lock(other, os.getpid())  # a live process holds it

    reason = realnode.unavailable_reason(PATHS)

    assert reason == (
        f"the real node of this machine belongs to the cluster in {other.state} "
        "(one per machine: stopping that cluster frees it)"
    )
    assert realnode.unavailable_reason(other) is None


def test_a_lock_whose_kubelet_died_is_free(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(realnode, "LOCK", tmp_path / "lock.json")
    dead = subprocess.Popen(["true"])
    dead.wait()
    realnode.hold_lock(realnode.NodePaths(tmp_path / "other"), dead.pid)

    assert realnode.lock_owner() is None


def test_without_root_the_reason_names_the_uid(monkeypatch) -> None:
    monkeypatch.delenv("TESTAPP_REAL_NODE", raising=False)
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)

    reason = realnode.unavailable_reason(PATHS)

    assert reason == ("the real node needs root for containerd, cgroups and the bridge (uid 1000)")


# What `iptables-nft-save -t filter` prints with kube-router's rules beside another tool's.
SAVED_WITH_ENGINE = """# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-NWPLCY-DEFAULT - [0:0]
:KUBE-POD-FW-ABC - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-ROUTER-INPUT - [0:0]
:NETAVARK_FORWARD - [0:0]
-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A FORWARD -j NETAVARK_FORWARD
-A KUBE-ROUTER-FORWARD -d 10.244.0.5/32 -j KUBE-POD-FW-ABC
-A KUBE-POD-FW-ABC -j KUBE-NWPLCY-DEFAULT
COMMIT
"""


def test_the_engine_runs_only_its_network_policy_controller() -> None:
    args = realnode.kube_router_args(PATHS, "node-a")

    assert {"--run-firewall=true", "--run-router=false", "--run-service-proxy=false"} <= set(args)
    # Its health server would listen on every interface; no metrics either.
    assert {"--health-port=0", "--metrics-port=0"} <= set(args)
    assert f"--kubeconfig={PATHS.root}/kube-router.kubeconfig" in args  # `stop` finds it by that
    assert "--hostname-override=node-a" in args
    assert f"--service-cluster-ip-range={realnode.SERVICE_CIDR}" in args


def test_the_service_range_is_the_api_servers() -> None:
    args = components.component_args("kube-apiserver", Path("/s"), state.Ports(*range(1, 7)))

    assert f"--service-cluster-ip-range={realnode.SERVICE_CIDR}" in args


def test_the_engines_footprint_is_its_jumps_chains_and_sets_and_nothing_of_anyone_else() -> None:
    assert realnode.engine_jumps(SAVED_WITH_ENGINE) == [
        '-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" '
        "-j KUBE-ROUTER-FORWARD",
        '-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" '
        "-j KUBE-ROUTER-INPUT",
    ]
    assert realnode.engine_chains(SAVED_WITH_ENGINE) == [
        "KUBE-NWPLCY-DEFAULT",
        "KUBE-POD-FW-ABC",
        "KUBE-ROUTER-FORWARD",
        "KUBE-ROUTER-INPUT",
    ]
    assert realnode.engine_ipsets("KUBE-SRC-X\nnetavark-set\nKUBE-DST-Y\n") == [
        "KUBE-DST-Y",
        "KUBE-SRC-X",
    ]


def test_the_engine_is_cleaned_up_jumps_first_then_chains_emptied_then_deleted_then_sets() -> None:
    commands = realnode.engine_cleanup(SAVED_WITH_ENGINE, ["KUBE-SRC-X"])

    verbs = [command[3] if command[0] == "iptables" else command[1] for command in commands]
    assert verbs == ["-D", "-D"] + ["-F"] * 4 + ["-X"] * 4 + ["destroy"]
    # A jump is deleted by its own rule text, the comment kept as one argument.
    assert commands[0][4:] == [
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "kube-router netpol - TEMCG2JMHZYE7H7T",
        "-j",
        "KUBE-ROUTER-FORWARD",
    ]
    assert not any("NETAVARK" in " ".join(command) for command in commands)
