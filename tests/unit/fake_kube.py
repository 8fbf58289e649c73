"""A dict-backed API server for reconcile tests: records every write and answers like the real
one (resourceVersions, a Deployment's generation, creationTimestamps). Its `world()` is a watch
with no lag; a test that wants one lagging reads a copy."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from testapp_operator import RELEASE_LABEL, render
from testapp_operator.reconciler import Cache

Body = dict[str, Any]
CREATED = "2026-01-02T03:04:05Z"


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Body] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name), in order
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        # (verb, kind) -> what such a write raises (an ApiException, or any error of our own)
        self.failing: dict[tuple[str, str], Exception] = {}
        self._version = 0

    # --- what the reconciler calls ----------------------------------------------------------

    async def apply(self, body: Body) -> Body:
        kind, name = body["kind"], body["metadata"]["name"]
        self._write("apply", kind, name)
        old = self.objects.get((kind, name))
        self._check_version(old, body["metadata"].get("resourceVersion"))
        new = copy.deepcopy(body)
        if old is not None:
            new["metadata"] = {**old["metadata"], **new["metadata"]}
            if "status" in old:
                new["status"] = old["status"]
        if kind == "Deployment":
            generation = (old or {}).get("metadata", {}).get("generation", 0)
            changed = old is None or old.get("spec") != new.get("spec")
            new["metadata"]["generation"] = generation + 1 if changed else generation
        return self._store(new)

    async def annotate(
        self, kind: str, name: str, namespace: str, annotations: Mapping[str, str]
    ) -> Body:
        self._write("annotate", kind, name)
        body = copy.deepcopy(self.objects[(kind, name)])
        body["metadata"].setdefault("annotations", {}).update(annotations)
        return self._store(body)

    async def delete(self, kind: str, name: str, namespace: str | None) -> bool:
        self._write("delete", kind, name)
        return self.objects.pop((kind, name), None) is not None

    async def patch_release_status(self, name: str, status: Body, resource_version: str) -> Body:
        self._write("patch", "TestAppRelease/status", name)
        body = copy.deepcopy(self.objects[("TestAppRelease", name)])
        self._check_version(body, resource_version)
        merged = {**body.get("status", {}), **status}
        body["status"] = {key: value for key, value in merged.items() if value is not None}
        return self._store(body)

    async def event(
        self, release: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        self.events.append((type_, reason, message))

    # --- what a test arranges ------------------------------------------------------------------

    def world(self, *, frozen: bool = False) -> Cache:
        """What a watch delivers: everything at once, or (frozen) what exists now and nothing
        later, as a watch that lags behind the writes."""
        objects = copy.deepcopy(self.objects) if frozen else self.objects

        def one(kind: str) -> Any:
            # A child is looked up by render.index_key (namespace/name); the fake keeps names.
            return lambda key: copy.deepcopy(objects.get((kind, key.rpartition("/")[2])))

        return Cache(
            release=one("TestAppRelease"),
            children={child.kind.kind: one(child.kind.kind) for child in render.CHILDREN},
            revisions=lambda release: [
                copy.deepcopy(body)
                for (kind, _), body in objects.items()
                if kind == "ControllerRevision"
                and body["metadata"]["labels"].get(RELEASE_LABEL) == release
            ],
        )

    def create_release(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "testapp.dev/v1",
            "kind": "TestAppRelease",
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"env": "dev", "image": "registry.example.com/test-app", **spec},
        }
        self._store(body)

    def change_spec(self, name: str, **spec: Any) -> None:
        body = self.objects[("TestAppRelease", name)]
        body["spec"].update(spec)
        body["spec"] = {key: value for key, value in body["spec"].items() if value is not None}
        body["metadata"]["generation"] += 1
        self._store(body)

    def finish_rollout(self, name: str, *, deadline_exceeded: bool = False) -> None:
        """What the Deployment controller writes once the rollout completed (or stalled)."""
        body = self.objects[("Deployment", name)]
        replicas = body["spec"]["replicas"]
        reason = "ProgressDeadlineExceeded" if deadline_exceeded else "NewReplicaSetAvailable"
        done = 0 if deadline_exceeded else replicas
        body["status"] = {
            "observedGeneration": body["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": done,
            "availableReplicas": done,
            "conditions": [{"type": "Progressing", "status": "True", "reason": reason}],
        }
        self._store(body)

    def status(self, name: str) -> Body:
        return self.objects[("TestAppRelease", name)].get("status", {})

    def revisions(self, name: str) -> dict[int, Body]:
        return {
            body["revision"]: body
            for (kind, _), body in self.objects.items()
            if kind == "ControllerRevision" and body["metadata"]["labels"][RELEASE_LABEL] == name
        }

    def take_writes(self) -> list[tuple[str, str, str]]:
        writes, self.writes = self.writes, []
        return writes

    # --- the server's part ---------------------------------------------------------------------

    def _write(self, verb: str, kind: str, name: str) -> None:
        if (verb, kind) in self.failing:
            raise self.failing[(verb, kind)]
        self.writes.append((verb, kind, name))

    def _check_version(self, stored: Body | None, precondition: str | None) -> None:
        if stored is not None and precondition not in (None, stored["metadata"]["resourceVersion"]):
            raise ApiException(status=409, reason="Conflict: the object has been modified")

    def _store(self, body: Body) -> Body:
        self._version += 1
        body["metadata"]["resourceVersion"] = str(self._version)
        body["metadata"].setdefault("creationTimestamp", CREATED)
        self.objects[(body["kind"], body["metadata"]["name"])] = body
        return copy.deepcopy(body)
