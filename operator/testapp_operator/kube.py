"""Every Kubernetes API call the operator makes, and nothing else.

The calls are api.Api's, which are synchronous: each runs in a bounded thread pool and the
handlers await it, so nothing blocks Kopf's event loop. Every write names the operator's field
manager.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from testapp_operator import API_VERSION, FIELD_MANAGER, KIND, OPERATOR_NAME, api, kinds
from testapp_operator.conditions import timestamp

T = TypeVar("T")
Body = dict[str, Any]


class Kube:
    """The operator's API client: server-side apply, ControllerRevisions, status, events."""

    def __init__(self, threads: int = 16) -> None:
        # Concurrent API calls (threads, pooled connections); the reconciler runs as many.
        self.threads = threads
        self._api = api.connect(
            connections=threads, user_agent=f"{OPERATOR_NAME}/kubernetes-python"
        )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    async def apply(self, body: Body) -> Body:
        """Server-side apply `body`, taking over conflicting fields: the operator is the single
        writer of what it renders."""
        return await self._run(self._api.apply, body, FIELD_MANAGER)

    async def annotate(
        self, kind: str, name: str, namespace: str, annotations: Mapping[str, str]
    ) -> Body:
        path = kinds.BY_NAME[kind].path(name, namespace)
        patch = {"metadata": {"annotations": dict(annotations)}}
        return await self._run(self._api.merge_patch, path, patch, FIELD_MANAGER)

    async def delete(self, kind: str, name: str, namespace: str | None) -> bool:
        """True when this call deleted it, False when it was already gone."""
        return await self._run(self._api.delete, kinds.BY_NAME[kind].path(name, namespace))

    async def patch_release_status(self, name: str, status: Body, resource_version: str) -> Body:
        """Merge-patch the release's status subresource (`None` values remove fields), only if
        the release is still at `resource_version` (409 Conflict otherwise)."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": status}
        path = kinds.RELEASE.path(name, subresource="status")
        return await self._run(self._api.merge_patch, path, patch, FIELD_MANAGER)

    async def peering_status(self, name: str) -> Body | None:
        """The status of Kopf's ClusterKopfPeering `name` (its peers): the readiness probe's one
        read."""
        return (await self._run(self._api.call, "GET", kinds.PEERING.path(name))).get("status")

    async def event(
        self, release: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on the release (it is cluster-scoped, so the Event lives in
        `default`, where `kubectl describe tar` looks for it)."""
        now = timestamp(datetime.datetime.now(datetime.UTC))
        metadata = release["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": "default",
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata["name"],
                "uid": metadata["uid"],
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": OPERATOR_NAME},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # Nothing reads the created Event: its response is not decoded.
        await self._run(self._api.request, "POST", kinds.EVENT.path(namespace="default"), body)
