"""The locked dependencies (requirements.txt and the project's pinned deps) have no known
vulnerabilities, or each finding is explained below. pip-audit needs its vulnerability service
over the network: when it cannot reach it, the test says so and skips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
# Finding id -> why it does not apply (empty: none known).
EXPLAINED: dict[str, str] = {}


def project_pins() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [pin for pin in pins if "==" in pin]


def test_locked_dependencies_have_no_unexplained_vulnerabilities(tmp_path: Path) -> None:
    if not PIP_AUDIT.exists() and shutil.which("pip-audit") is None:
        pytest.skip("pip-audit is not installed (make venv installs it)")
    pins = tmp_path / "project-requirements.txt"
    pins.write_text("\n".join(project_pins()) + "\n")
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            "-r",
            str(REPO / "requirements.txt"),
            "-r",
            str(pins),
            "--format=json",
            "--progress-spinner=off",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"pip-audit could not run: {result.stderr.strip()[-300:]}")
    dependencies = report["dependencies"]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in dependencies})
        pytest.skip(
            "pip-audit cannot reach its vulnerability service (PyPI's JSON API) from here: "
            f"every dependency skipped ({'; '.join(reasons)})"
        )
    findings = [
        f"{d['name']} {d['version']}: {v['id']}"
        for d in audited
        for v in d.get("vulns", [])
        if v["id"] not in EXPLAINED
    ]
    assert not findings, "unexplained vulnerabilities:\n" + "\n".join(findings)
