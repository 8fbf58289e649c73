"""The scanner as a gate (`make lint`): checkov over what k8s/ installs and over the objects a
release renders in each environment; any failed check not in skips.yaml fails, and so does a skip
that no longer matches a finding (it would hide the next one).

    .venv/bin/python hack/checkov/gate.py --checkov .venv-checkov/bin/checkov

Each unit is scanned on its own: checkov's NetworkPolicy check (CKV2_K8S_6) takes a policy with
an empty podSelector in *any* namespace as covering every Pod, so scanned together, one release's
default deny would hide a missing policy of the operator's.

What is scanned is what runs, one unit per kustomization under k8s/ (a new one is scanned too):
- `operator`: k8s/operator as `make install-operator` applies it, the image set by digest;
- `release-<env>`: k8s/overlays/<env> with the image, tag and digest CI deploys, rendered by the
  operator's own render.py (Namespace, Deployment, Service, NetworkPolicies, ControllerRevision);
  k8s/base is scanned through them;
- any other (e.g. `observability`): as `kubectl kustomize` renders it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
K8S = REPO / "k8s"
# Stand-ins for what CI supplies at deploy/install time (shape only; nothing is pulled).
IMAGE = "registry.example.com/test-app"
OPERATOR_IMAGE = "registry.example.com/testapp-operator"
TAG = "0123abcd"
DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Finding:
    unit: str
    check: str
    resource: str
    name: str

    def __str__(self) -> str:
        return f"{self.unit}: {self.check} {self.resource} ({self.name})"


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def operator_manifests(work: Path) -> str:
    """k8s/operator with the image by digest, the way the install sets it (a kustomization on
    top of it with `images:`)."""
    overlay = work / "operator-install"
    overlay.mkdir()
    relative = Path("../" * len(overlay.relative_to("/").parts)) / REPO.relative_to("/")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative / "k8s" / "operator")],
                "images": [
                    {"name": "testapp-operator", "newName": OPERATOR_IMAGE, "digest": DIGEST}
                ],
            }
        )
    )
    return kubectl("kustomize", str(overlay))


def kustomized(directory: Path, _: Path) -> str:
    return kubectl("kustomize", str(directory))


def release_manifests(directory: Path, _: Path) -> str:
    overlay = kubectl("kustomize", str(directory))
    render = [sys.executable, str(HERE / "render_releases.py")]
    return subprocess.run(
        [*render, "--image", IMAGE, "--tag", TAG, "--digest", DIGEST],
        input=overlay,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def scan(checkov: str, directory: Path) -> tuple[int, list[dict]]:
    """(passed, failed checks) of one directory."""
    options = ["--quiet", "--compact", "--skip-download", "--framework", "kubernetes", "-o", "json"]
    result = subprocess.run(
        [checkov, *options, "-d", str(directory)],
        capture_output=True,
        text=True,
    )
    # checkov exits 1 when a check fails; anything else it prints is an error.
    if result.returncode not in (0, 1):
        sys.exit(f"checkov failed on {directory}:\n{result.stderr}")
    report = json.loads(result.stdout)
    if report["summary"].get("parsing_errors"):
        sys.exit(f"checkov could not parse {directory}: {report['results'].get('parsing_errors')}")
    return report["summary"]["passed"], report["results"]["failed_checks"]


def units() -> dict[str, Callable[[Path], str]]:
    """Unit name -> what renders its manifests (given a scratch directory)."""
    found: dict[str, Callable[[Path], str]] = {}
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        directory = kustomization.parent
        where = directory.relative_to(K8S)
        if where == Path("base"):
            continue  # a release's base: scanned through every overlay
        if where.parts[0] == "overlays":
            found[f"release-{directory.name}"] = partial(release_manifests, directory)
        elif where == Path("operator"):
            found["operator"] = operator_manifests
        else:
            found["-".join(where.parts)] = partial(kustomized, directory)
    return found


def load_skips() -> list[dict]:
    skips = yaml.safe_load((HERE / "skips.yaml").read_text()) or []
    for skip in skips:
        missing = {"check", "resource", "why"} - set(skip)
        if missing or not str(skip.get("why", "")).strip():
            sys.exit(f"hack/checkov/skips.yaml: {skip} needs check, resource and why")
    return skips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkov", required=True, help="the checkov executable")
    args = parser.parse_args()
    skips = load_skips()
    sources = units()
    passed = 0
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        work = Path(tmp)
        for unit, source in sources.items():
            (work / unit).mkdir()
            (work / unit / f"{unit}.yaml").write_text(source(work))
        # One checkov process per unit, side by side: each spends most of its time starting up.
        with ThreadPoolExecutor(max_workers=len(sources)) as pool:
            results = pool.map(lambda unit: scan(args.checkov, work / unit), sources)
        for unit, (unit_passed, failed) in zip(sources, results, strict=True):
            print(f"  {unit}: {unit_passed} passed, {len(failed)} failed")
            passed += unit_passed
            findings += [
                Finding(unit, f["check_id"], f["resource"], f["check_name"]) for f in failed
            ]
    skipped = [f for f in findings if any(_matches(s, f) for s in skips)]
    new = [f for f in findings if f not in skipped]
    stale = [s for s in skips if not any(_matches(s, f) for f in findings)]
    print(
        f"checkov: {passed} passed, {len(findings)} failed of which {len(skipped)} skipped "
        f"(hack/checkov/skips.yaml), over {', '.join(sources)}"
    )
    for finding in new:
        print(f"  NEW FINDING {finding}")
    for skip in stale:
        print(f"  STALE SKIP {skip['check']} {skip['resource']}: nothing fails it any more")
    return 1 if new or stale else 0


def _matches(skip: dict, finding: Finding) -> bool:
    return skip["check"] == finding.check and skip["resource"] == finding.resource


if __name__ == "__main__":
    sys.exit(main())
