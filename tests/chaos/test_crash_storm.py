"""Crash storm: tag changes keep coming while the operator is SIGKILLed every few seconds; every
release still converges to its last spec with a consistent history."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest
from testapp_dev import LiveCluster, OperatorProcess, is_ready_at, manifest, unique, wait_until

from tests.chaos.helpers import World, assert_history_consistent

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

RELEASES = 50
CHANGES = 200
KILL_EVERY = 3.0  # seconds between SIGKILLs


def test_every_release_converges_to_its_last_spec_through_a_crash_storm(
    cluster: LiveCluster, operators: list[OperatorProcess]
) -> None:
    names = [unique(f"storm{i:02d}") for i in range(RELEASES)]
    last = dict.fromkeys(names, "v0")
    items = [manifest(name, tag="v0", revisionHistoryLimit=100) for name in names]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    try:
        all_ready(cluster, names, last, timeout=180)

        # Every change writes a new tag, so every revision must have a distinct snapshot.
        rng = random.Random(7)
        changes = [(rng.choice(names), f"c{i}") for i in range(CHANGES)]
        kills = 0
        next_kill = time.monotonic() + KILL_EVERY
        for name, tag in changes:
            patch = json.dumps({"spec": {"tag": tag}})
            cluster.kubectl("patch", "tar", name, "--type=merge", "-p", patch)
            last[name] = tag
            if time.monotonic() >= next_kill:
                victim = operators[kills % len(operators)]  # with two, they take turns
                victim.stop(signal.SIGKILL)
                victim.start()
                kills += 1
                next_kill = time.monotonic() + KILL_EVERY
        assert kills >= 5, f"only {kills} kills: the storm was too short to mean anything"
        print(
            f"crash storm: {kills} SIGKILLs of {len(operators)} operator(s) during {CHANGES} "
            f"changes over {RELEASES} releases"
        )

        all_ready(cluster, names, last, timeout=240)
        world = World.read(cluster)
        for name in names:
            body = assert_history_consistent(cluster, name, world)
            assert body["spec"]["tag"] == last[name]
            assert body["status"]["history"][0]["tag"] == last[name]
    finally:
        cluster.kubectl("delete", "tar", *names, "--ignore-not-found", "--wait=false")


def all_ready(cluster: LiveCluster, names: list[str], tags: dict[str, str], timeout: float) -> None:
    wanted = set(names)

    def converged() -> bool | list[str]:
        items = cluster.get("tar")["items"]
        ready = {
            b["metadata"]["name"]
            for b in items
            if b["metadata"]["name"] in wanted and is_ready_at(b, tags[b["metadata"]["name"]])
        }
        return ready == wanted or sorted(wanted - ready)[:5]

    wait_until(
        lambda: converged() is True,
        timeout=timeout,
        interval=1,
        what="every release Ready at its last tag",
    )
