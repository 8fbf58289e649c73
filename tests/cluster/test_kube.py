"""The operator's API client (testapp_operator.kube) against the real API server."""

from __future__ import annotations

import asyncio

import pytest
from testapp_dev import LiveCluster
from testapp_operator.kube import Kube

pytestmark = pytest.mark.cluster


@pytest.mark.usefixtures("crd")
def test_every_kind_of_call_hands_its_connection_back(
    cluster: LiveCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls one after another share one connection: a response left unread (a delete's, an
    Event's) used to keep its connection, so the next call paid for a new TLS handshake."""
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "conn-1", "namespace": namespace},
        "revision": 1,
        "data": {"tag": "1.0.0"},
    }
    involved = {"metadata": {"name": "conn", "uid": "0", "resourceVersion": "1"}}

    async def calls(kube: Kube) -> None:
        for round_ in range(3):
            await kube.apply(revision)
            await kube.annotate("ControllerRevision", "conn-1", namespace, {"round": str(round_)})
            await kube.event(involved, "Normal", "ConnectionTest", f"round {round_}")
            await kube.delete("ControllerRevision", "conn-1", namespace)
            await kube.delete("ControllerRevision", "conn-1", namespace)  # a 404 is fine too

    kube = Kube(threads=2)
    try:
        asyncio.run(calls(kube))
        pool = kube._api.client.rest_client.pool_manager.connection_from_url(cluster.server)
        assert pool.num_connections == 1
    finally:
        kube.close()
