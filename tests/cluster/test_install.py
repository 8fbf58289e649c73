"""`make install-crd` and `make install-operator` from both starting points: nothing installed
yet, and a CRD that someone applied client-side (`kubectl apply -f crds/`), whose fields a plain
server-side apply refuses to take over."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from testapp_dev import LiveCluster

from tests.pipeline.make import make_against

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "testapp.dev_testappreleases.yaml"
CRD = "customresourcedefinition.apiextensions.k8s.io/testappreleases.testapp.dev"
MANAGER = "testapp-install"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def apply_client_side(cluster: LiveCluster, tmp_path: Path) -> Path:
    """The CRD as someone edited and applied it client-side: kubectl apply owns its versions."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] = f"edited by hand {uuid.uuid4().hex[:6]}"
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    cluster.kubectl("apply", "-f", str(path))
    return path


def spec_owners(cluster: LiveCluster, name: str) -> set[str]:
    """The managers owning fields of the object's spec."""
    fields = cluster.get(name, "--show-managed-fields")["metadata"]["managedFields"]
    return {entry["manager"] for entry in fields if "f:spec" in entry.get("fieldsV1", {})}


def test_install_crd_takes_over_a_crd_applied_client_side_and_says_so(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    apply_client_side(cluster, tmp_path)
    plain = cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE), check=False)
    assert plain.returncode != 0 and "conflict" in plain.stderr  # the starting point

    result = make_against(cluster, "install-crd")

    # Other managers the session's earlier tests left on the CRD may be named beside it.
    assert re.search(
        r"^customresourcedefinition/testappreleases\.testapp\.dev: "
        r"taking over the fields set by .*\bkubectl-client-side-apply\b",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    assert "condition met (Established)" in result.stdout
    assert spec_owners(cluster, CRD) == {MANAGER}


@pytest.fixture
def fresh_crd_dir(cluster: LiveCluster, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Our CRD under a group and names no cluster has seen: a fresh install, not touching the
    real one (nor `kubectl get tar`, which a second `tar` short name would make ambiguous)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    group = f"fresh-{uuid.uuid4().hex[:8]}.testapp.dev"
    crd["spec"]["group"] = group
    kind = "FreshTestAppRelease"
    crd["spec"]["names"] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": f"{kind.lower()}s",
        "singular": kind.lower(),
    }
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
    (tmp_path / "kustomization.yaml").write_text("resources: [crd.yaml]\n")
    name = f"customresourcedefinition.apiextensions.k8s.io/{crd['metadata']['name']}"
    yield tmp_path, name
    cluster.kubectl("delete", name, "--ignore-not-found")


def test_install_crd_installs_a_fresh_crd_and_waits_until_it_is_served(
    cluster: LiveCluster, fresh_crd_dir: tuple[Path, str]
) -> None:
    directory, name = fresh_crd_dir
    result = subprocess.run(
        [sys.executable, "-m", "testapp_operator.delivery.install", "crd", directory],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "taking over" not in result.stdout
    established = cluster.get(name)["status"]["conditions"]
    assert {"type": "Established", "status": "True"}.items() <= next(
        c for c in established if c["type"] == "Established"
    ).items()
    assert spec_owners(cluster, name) == {MANAGER}


@pytest.fixture
def no_operator_deployment(cluster: LiveCluster) -> Iterator[None]:
    yield
    cluster.kubectl(
        "-n", "testapp-system", "delete", "deployment", "testapp-operator", "--ignore-not-found"
    )


def test_install_operator_runs_the_given_digest_over_a_client_side_crd_and_upgrades(
    cluster: LiveCluster, no_operator_deployment: None, tmp_path: Path
) -> None:
    apply_client_side(cluster, tmp_path)
    image = "127.0.0.1:5000/testapp-operator"

    first = make_against(
        cluster, "install-operator", f"OPERATOR_IMAGE={image}", f"OPERATOR_DIGEST={DIGEST}"
    )

    assert re.search(
        r"taking over the fields set by .*\bkubectl-client-side-apply\b", first.stdout
    ), first.stdout
    assert 'deployment "testapp-operator" successfully rolled out' in first.stdout
    deployment = cluster.get("deployment", "testapp-operator", "-n", "testapp-system")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image}@{DIGEST}"

    upgrade = DIGEST.replace("0123", "4567")
    second = make_against(
        cluster, "install-operator", f"OPERATOR_IMAGE={image}", f"OPERATOR_DIGEST={upgrade}"
    )

    assert "taking over" not in second.stdout
    assert 'deployment "testapp-operator" successfully rolled out' in second.stdout
    deployment = cluster.get("deployment", "testapp-operator", "-n", "testapp-system")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image}@{upgrade}"
