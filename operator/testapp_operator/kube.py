"""Every Kubernetes API call the operator makes, and nothing else.

The kubernetes client is synchronous, so each call runs in a bounded thread pool and the handlers
await it: nothing blocks Kopf's event loop. Every write names the same field manager.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from testapp_operator import FIELD_MANAGER, GROUP, VERSION
from testapp_operator.conditions import timestamp

T = TypeVar("T")
Body = dict[str, Any]

# (apiVersion, kind) -> the dynamic client's resource, resolved once at startup.
KINDS = (
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("v1", "Event"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ControllerRevision"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    (f"{GROUP}/{VERSION}", "TestAppRelease"),
)


def load_client_config(threads: int) -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a Pod, the kubeconfig otherwise."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    # One connection per worker thread, or calls queue behind the pool's default of four.
    configuration.connection_pool_maxsize = threads
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """The operator's API client: server-side apply, ControllerRevisions, status, events."""

    def __init__(self, threads: int = 16) -> None:
        # Concurrent API calls (threads, pooled connections); the reconciler runs as many.
        self.threads = threads
        self._api = load_client_config(threads)
        self._api.user_agent = f"{FIELD_MANAGER}/kubernetes-python"
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self._dynamic = DynamicClient(self._api)
        self._resources = {
            kind: self._dynamic.resources.get(api_version=api_version, kind=kind)
            for api_version, kind in KINDS
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    async def _request(self, call: Callable[..., Any], **kwargs: Any) -> bytes:
        """A dynamic-client call whose response is read to the end in the worker thread and kept
        as bytes. Reading it all hands the connection back to the pool: a response left unread
        kept its connection, and the next call paid for a new TLS handshake (docs/benchmarks.md)."""
        return await self._run(lambda: call(serialize=False, **kwargs).data)

    async def _call(self, call: Callable[..., Any], **kwargs: Any) -> Body:
        """A dynamic-client call whose response body is decoded as plain JSON: the client's
        default wraps every response in a tree of `ResourceField` objects, only for us to turn it
        back into a dict (that tree was the operator's largest transient allocation)."""
        return json.loads(await self._request(call, **kwargs))

    async def apply(self, body: Body) -> Body:
        """Server-side apply `body` as our field manager, taking over conflicting fields: the
        operator is the single writer of what it renders (controller-runtime's ForceOwnership)."""
        resource = self._resources[body["kind"]]
        metadata = body["metadata"]
        return await self._call(
            self._dynamic.server_side_apply,
            resource=resource,
            body=body,
            name=metadata["name"],
            namespace=metadata.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    async def annotate(
        self, kind: str, name: str, namespace: str, annotations: Mapping[str, str]
    ) -> Body:
        return await self._call(
            self._resources[kind].patch,
            name=name,
            namespace=namespace,
            body={"metadata": {"annotations": dict(annotations)}},
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )

    async def delete(self, kind: str, name: str, namespace: str | None) -> bool:
        """True when this call deleted it, False when it was already gone."""
        try:
            await self._request(self._resources[kind].delete, name=name, namespace=namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            return False
        return True

    async def patch_release_status(self, name: str, status: Body, resource_version: str) -> Body:
        """Merge-patch the release's status subresource (`None` values remove fields), only if
        the release is still at `resource_version` (409 Conflict otherwise)."""
        return await self._call(
            self._resources["TestAppRelease"].status.patch,
            name=name,
            body={"metadata": {"resourceVersion": resource_version}, "status": status},
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )

    async def peering_status(self, name: str) -> Body | None:
        """The status of Kopf's ClusterKopfPeering `name` (its peers): the readiness probe's one
        read. Resolved when first asked: a standalone operator needs no peering CRD."""
        resource = await self._run(
            self._dynamic.resources.get, api_version="kopf.dev/v1", kind="ClusterKopfPeering"
        )
        return (await self._call(resource.get, name=name)).get("status")

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
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TestAppRelease",
                "name": metadata["name"],
                "uid": metadata["uid"],
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # Nothing reads the created Event: its response is not decoded.
        await self._request(self._resources["Event"].create, body=body, namespace="default")
