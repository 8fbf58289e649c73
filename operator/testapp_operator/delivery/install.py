"""Install or upgrade the CRDs and the operator: server-side apply under one field manager.

    python -m testapp_operator.delivery.install crd [DIR]                   (make install-crd)
    python -m testapp_operator.delivery.install operator --image R --digest D
                                                                 (make install-operator)

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
from kubernetes.client.exceptions import ApiException

from testapp_operator import api
from testapp_operator.api import Api
from testapp_operator.rollout import observe_deployment

INSTALLER_FIELD_MANAGER = "testapp-install"
CLIENT_SIDE_APPLY = "kubectl-client-side-apply"
OPERATOR_NAMESPACE = "testapp-system"
OPERATOR_DEPLOYMENT = "testapp-operator"
OPERATOR_CONTAINER = "operator"
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources"}
POLL_SECONDS = 1.0

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
    if entry.get("manager") == INSTALLER_FIELD_MANAGER or entry.get("subresource"):
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


def rollout_progress(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, what it waits for): rollout.observe_deployment's verdict, as the operator judges
    its own Deployments; a rollout past its progress deadline is an error."""
    name = deployment["metadata"]["name"]
    observed = observe_deployment(deployment)
    if observed.deadline_exceeded:
        raise InstallError(f"deployment {name} exceeded its progress deadline")
    if observed.complete:
        return True, f'deployment "{name}" successfully rolled out'
    return False, f"deployment {name}: {observed.message}"


# --- I/O --------------------------------------------------------------------------------------


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


def _served(server: Api, crd: Mapping[str, Any], what: str) -> tuple[bool, str]:
    return established(server.get(crd) or {}), f"{what}: waiting until it is established"


def apply_all(server: Api, objects: Iterable[Object], say: Callable[[str], None]) -> None:
    for obj in install_order(objects):
        what = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        others = managers_taken_over(server.get(obj))
        if others:
            say(f"{what}: taking over the fields set by {', '.join(others)}")
        applied = server.apply(obj, INSTALLER_FIELD_MANAGER)
        fields = without_client_side_apply(applied)
        if fields is not None:
            server.merge_patch(server.path_of(obj), {"metadata": {"managedFields": fields}})
        say(f"{what} serverside-applied")
        if obj["kind"] == "CustomResourceDefinition":
            _wait(lambda obj=obj, what=what: _served(server, obj, what), 60, say)
            say(f"{what} condition met (Established)")


def install_crds(server: Api, directory: Path, say: Callable[[str], None]) -> None:
    apply_all(server, load(directory), say)


def install_operator(
    server: Api,
    manifests: Path,
    image: str,
    digest: str,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    say(f"Installing the operator {image}@{digest}")
    apply_all(server, with_operator_image(load(manifests), image, digest), say)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR_DEPLOYMENT, "namespace": OPERATOR_NAMESPACE},
    }
    say(_wait(lambda: rollout_progress(server.get(deployment) or {}), timeout, say))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testapp_operator.delivery.install", description=__doc__.splitlines()[0]
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
        server = api.connect()
        if args.command == "crd":
            install_crds(server, args.directory, say)
        else:
            install_operator(server, args.manifests, args.image, args.digest, args.timeout, say)
    except (InstallError, api.ConfigError, LookupError) as error:
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
