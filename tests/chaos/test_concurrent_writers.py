"""CI pipelines (merge patches) and people (`kubectl edit`: read, change, replace with the
resourceVersion they read) race on one release: no update is lost, the result is one of the
written states, and the history records every tag that was ever deployed."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import pytest
from kubernetes import client, config, watch
from testapp_dev import IMAGE, LiveCluster, OperatorProcess, manifest, unique

from tests.chaos.helpers import assert_history_consistent, deployment, image_of, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

WRITERS = 2  # of each kind
EDITS = 8  # per writer


@dataclass(frozen=True)
class Write:
    tag: str
    resource_version: int


def test_racing_patches_and_edits_lose_no_update_and_history_records_each_deployed_tag(
    cluster: LiveCluster, operators: list[OperatorProcess]
) -> None:
    name = unique("race")
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(manifest(name, tag="v0", revisionHistoryLimit=100))
    )
    try:
        wait_ready(cluster, name, "v0")
        deployed, stop = watch_images(cluster, name)
        writes: list[Write] = []
        conflicts: list[str] = []
        lock = threading.Lock()

        def ci(writer: int) -> None:
            for i in range(EDITS):
                tag = f"ci{writer}-{i}"
                out = cluster.kubectl(
                    "patch",
                    "tar",
                    name,
                    "--type=merge",
                    "-p",
                    json.dumps({"spec": {"tag": tag}}),
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                )
                with lock:
                    writes.append(Write(tag, int(out.stdout)))

        def human(writer: int) -> None:
            for i in range(EDITS):
                tag = f"human{writer}-{i}"
                while (
                    True
                ):  # what a person does when kubectl edit says "the object has been modified"
                    body = cluster.get("tar", name)
                    body["spec"]["tag"] = tag
                    out = cluster.kubectl(
                        "replace",
                        "-f",
                        "-",
                        "-o",
                        "jsonpath={.metadata.resourceVersion}",
                        input=json.dumps(body),
                        check=False,
                    )
                    if out.returncode == 0:
                        with lock:
                            writes.append(Write(tag, int(out.stdout)))
                        break
                    assert "the object has been modified" in out.stderr, out.stderr
                    with lock:
                        conflicts.append(tag)

        threads = [threading.Thread(target=ci, args=(w,)) for w in range(WRITERS)]
        threads += [threading.Thread(target=human, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(writes) == 2 * WRITERS * EDITS, "every writer got its writes in"

        # Writes are serialised by the API server: the last committed one is the spec.
        last = max(writes, key=lambda w: w.resource_version)
        body = wait_ready(cluster, name, last.tag)
        assert body["spec"]["tag"] == last.tag
        assert image_of(deployment(cluster, name)) == f"{IMAGE}:{last.tag}"

        stop.set()
        history = assert_history_consistent(cluster, name)["status"]["history"]
        recorded = {item["tag"] for item in history}
        written = {w.tag for w in writes} | {"v0"}
        assert recorded <= written, f"history holds a tag nobody wrote: {recorded - written}"
        ran = {image.removeprefix(f"{IMAGE}:") for image in list(deployed)}
        assert ran <= recorded, f"deployed but not in the history: {ran - recorded}"
    finally:
        cluster.kubectl("delete", "tar", name, "--ignore-not-found", "--wait=false", check=False)


def watch_images(cluster: LiveCluster, name: str) -> tuple[set[str], threading.Event]:
    """Every image the release's Deployment carries from now on (a watch sees each version)."""
    api = client.AppsV1Api(config.new_client_from_config(cluster.kubeconfig))
    seen: set[str] = set()
    stop = threading.Event()
    started = threading.Event()

    def run() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            api.list_namespaced_deployment,
            name,
            field_selector=f"metadata.name={name}",
            timeout_seconds=300,
        ):
            seen.add(event["object"].spec.template.spec.containers[0].image)
            started.set()
            if stop.is_set():
                stream.stop()

    threading.Thread(target=run, daemon=True).start()
    started.wait(timeout=30)  # the initial ADDED event: the watch is established
    return seen, stop
