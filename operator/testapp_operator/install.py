"""Install or upgrade the CRDs and the operator: server-side apply under one field manager.

    python -m testapp_operator.install crd [DIR]                      (make install-crd)
    python -m testapp_operator.install operator --image R --digest D  (make install-operator)

`crd` applies the CRDs of kustomization DIR (default crds/) and waits until they are served.
`operator` does that, then applies k8s/operator with the operator image set to R@D (never a
placeholder) and waits for the Deployment's rollout, as `kubectl rollout status` judges it.

It runs where kubectl does not: the pipeline's install job runs in the operator image, which has
Python and this package, nothing else. So it reads kustomizations itself, and only the part this
repository uses (`resources:`); anything else is refused by name rather than ignored.

A CRD applied client-side (`kubectl apply -f crds/`, what most people type) or by another
manager owns .spec.versions, and a plain server-side apply stops on that conflict. This install
is the owner of record: it applies with force, taking those fields over, and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

FIELD_MANAGER = "testapp-install"
CLIENT_SIDE_APPLY = "kubectl-client-side-apply"
OPERATOR_NAMESPACE = "testapp-system"
OPERATOR_DEPLOYMENT = "testapp-operator"
OPERATOR_CONTAINER = "operator"
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources"}
POLL_SECONDS = 1.0
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

Object = dict[str, Any]


class InstallError(Exception):
    """Something the person installing can act on; main() prints it and exits 1."""


# --- pure: manifests, ownership, rollout ------------------------------------------------------


def load(directory: Path) -> list[Object]:
    """The objects of a kustomization that lists only `resources` (files or directories)."""
    path = directory / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text()) or {}
    unsupported = sorted(set(kustomization) - KUSTOMIZATION_KEYS)
    if unsupported:
        raise InstallError(f"{path}: only `resources:` is supported here, not {unsupported}")
    objects: list[Object] = []
    for resource in kustomization.get("resources", []):
        target = directory / resource
        if target.is_dir():
            objects += load(target)
        else:
            objects += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    return objects


def install_order(objects: Iterable[Object]) -> list[Object]:
    """CRDs, then Namespaces, then the rest as listed: each exists before what uses it."""
    rank = {"CustomResourceDefinition": 0, "Namespace": 1}
    return sorted(objects, key=lambda obj: rank.get(obj["kind"], 2))


def with_operator_image(objects: Iterable[Object], image: str, digest: str) -> list[Object]:
    """A copy of the objects in which the operator's container runs image@digest."""
    result = json.loads(json.dumps(list(objects)))
    for obj in result:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == OPERATOR_DEPLOYMENT:
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if container["name"] == OPERATOR_CONTAINER:
                    container["image"] = f"{image}@{digest}"
                    return result
    raise InstallError(f"no container {OPERATOR_CONTAINER!r} in Deployment {OPERATOR_DEPLOYMENT}")


def _takes_over(entry: Mapping[str, Any]) -> bool:
    """Whose fields an install takes: a client-side apply's, another applier's (they would
    conflict). Controllers writing status or their own annotations keep theirs."""
    if entry.get("manager") == FIELD_MANAGER or entry.get("subresource"):
        return False
    return entry.get("operation") == "Apply" or entry.get("manager") == CLIENT_SIDE_APPLY


def managers_taken_over(obj: Mapping[str, Any] | None) -> list[str]:
    fields = (obj or {}).get("metadata", {}).get("managedFields") or []
    return sorted({entry["manager"] for entry in fields if _takes_over(entry)})


def without_client_side_apply(obj: Mapping[str, Any]) -> list[Object] | None:
    """The managedFields once a client-side apply's entry is gone (as `kubectl apply
    --server-side` migrates it), or None when there is none: fields it shared with our apply
    become ours alone, so a later apply of a changed value does not conflict with it again."""
    fields = obj.get("metadata", {}).get("managedFields") or []
    kept = [entry for entry in fields if entry.get("manager") != CLIENT_SIDE_APPLY]
    return kept if len(kept) < len(fields) else None


def established(crd: Mapping[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def rollout(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, what it waits for): the checks of `kubectl rollout status` for a Deployment."""
    name = deployment["metadata"]["name"]
    status = deployment.get("status") or {}
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return False, f"waiting for deployment {name} spec update to be observed"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Progressing" and condition["reason"] == "ProgressDeadlineExceeded":
            raise InstallError(f"deployment {name} exceeded its progress deadline")
    wanted = deployment["spec"].get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} updated replicas are available"
    if status.get("replicas", 0) > updated:
        old = status["replicas"] - updated
        return False, f"{old} old replicas are pending termination"
    if status.get("availableReplicas", 0) < updated:
        return (
            False,
            f"{status.get('availableReplicas', 0)} of {updated} updated replicas available",
        )
    return True, f'deployment "{name}" successfully rolled out'


# --- I/O --------------------------------------------------------------------------------------


class Cluster:
    """Server-side apply and reads by apiVersion and kind (resources found by discovery)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client
        self._discovered: dict[str, list[Object]] = {}

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = APPLY_PATCH,
        **query: Any,
    ) -> Object:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response, body=data.decode(errors="replace"))
        return json.loads(data)

    def _path(self, obj: Mapping[str, Any]) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        for fresh in (False, True):  # a CRD applied a moment ago: discover again once
            if fresh or api_version not in self._discovered:
                self._discovered[api_version] = self._call("GET", base)["resources"]
            match = [
                r
                for r in self._discovered[api_version]
                if r["kind"] == kind and "/" not in r["name"]
            ]
            if match:
                break
        else:
            raise InstallError(f"the API server does not serve {kind} ({api_version})")
        namespace = obj["metadata"].get("namespace")
        scope = f"/namespaces/{namespace}" if match[0]["namespaced"] else ""
        return f"{base}{scope}/{match[0]['name']}/{obj['metadata']['name']}"

    def get(self, obj: Mapping[str, Any]) -> Object | None:
        try:
            return self._call("GET", self._path(obj))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def apply(self, obj: Mapping[str, Any]) -> Object:
        return self._call(
            "PATCH", self._path(obj), body=obj, fieldManager=FIELD_MANAGER, force="true"
        )

    def set_managed_fields(self, obj: Mapping[str, Any], fields: list[Object]) -> None:
        patch = {"metadata": {"managedFields": fields}}
        self._call("PATCH", self._path(obj), body=patch, content_type=MERGE_PATCH)


def _wait(read: Callable[[], tuple[bool, str]], timeout: float, say: Callable[[str], None]) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        done, message = read()
        if done:
            return message
        if message != last:
            say(message)
            last = message
        if time.monotonic() > deadline:
            raise InstallError(f"timed out after {timeout:.0f}s: {message}")
        time.sleep(POLL_SECONDS)


def _served(cluster: Cluster, crd: Mapping[str, Any], what: str) -> tuple[bool, str]:
    return established(cluster.get(crd) or {}), f"{what}: waiting until it is established"


def apply_all(cluster: Cluster, objects: Iterable[Object], say: Callable[[str], None]) -> None:
    for obj in install_order(objects):
        what = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        others = managers_taken_over(cluster.get(obj))
        if others:
            say(f"{what}: taking over the fields set by {', '.join(others)}")
        applied = cluster.apply(obj)
        fields = without_client_side_apply(applied)
        if fields is not None:
            cluster.set_managed_fields(obj, fields)
        say(f"{what} serverside-applied")
        if obj["kind"] == "CustomResourceDefinition":
            _wait(lambda obj=obj, what=what: _served(cluster, obj, what), 60, say)
            say(f"{what} condition met (Established)")


def install_crds(cluster: Cluster, directory: Path, say: Callable[[str], None]) -> None:
    apply_all(cluster, load(directory), say)


def install_operator(
    cluster: Cluster,
    manifests: Path,
    image: str,
    digest: str,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    say(f"Installing the operator {image}@{digest}")
    apply_all(cluster, with_operator_image(load(manifests), image, digest), say)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR_DEPLOYMENT, "namespace": OPERATOR_NAMESPACE},
    }
    say(_wait(lambda: rollout(cluster.get(deployment) or {}), timeout, say))


def _api_client() -> client.ApiClient:
    try:
        return config.new_client_from_config()
    except ConfigException:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testapp_operator.install", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    crd = commands.add_parser("crd", help="the CRDs of a kustomization (default crds/)")
    crd.add_argument("directory", nargs="?", type=Path, default=Path("crds"))
    operator = commands.add_parser("operator", help="CRDs, RBAC and the operator, by digest")
    operator.add_argument("--image", required=True, help="the operator image repository")
    operator.add_argument("--digest", required=True, help="its digest, sha256:<64 hex>")
    operator.add_argument("--manifests", type=Path, default=Path("k8s/operator"))
    operator.add_argument("--timeout", type=float, default=300, help="seconds for the rollout")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        cluster = Cluster(_api_client())
        if args.command == "crd":
            install_crds(cluster, args.directory, say)
        else:
            install_operator(cluster, args.manifests, args.image, args.digest, args.timeout, say)
    except (InstallError, ConfigException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(
            f"error: the API server answered {error.status} {error.reason}: {error.body}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
