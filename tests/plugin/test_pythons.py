"""The plugin on each Python it claims (operator/pyproject.toml: requires-python >= 3.10): a
throwaway virtualenv per version gets ./operator as `pipx install ./operator` installs it (the
plugin's own dependencies, no Kopf), then the import, `kubectl-testapp --help` and the plugin's
unit tests (tests/unit/test_cli.py) run in it. A version that is not installed is skipped, with
one line naming it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The oldest the plugin claims and the newest the machine has; 3.11 is the operator's (.venv).
VERSIONS = ("3.10", "3.12")


def interpreter(version: str) -> str | None:
    """python<version> from pyenv's versions, else from PATH; None when neither runs."""
    candidates = []
    if shutil.which("pyenv"):
        installed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        for name in sorted((v for v in installed if v.startswith(f"{version}.")), reverse=True):
            prefix = subprocess.run(
                ["pyenv", "prefix", name], capture_output=True, text=True, check=False
            ).stdout.strip()
            candidates.append(f"{prefix}/bin/python{version}")
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}{result.stderr}"
    return result


@pytest.mark.parametrize("version", VERSIONS)
def test_the_plugin_installs_and_runs_on(version: str, tmp_path: Path) -> None:
    python = interpreter(version)
    if python is None:
        pytest.skip(
            f"python{version} is not installed (pyenv install {version}, or put it on PATH)"
        )
    venv = tmp_path / "venv"
    run(python, "-m", "venv", venv)
    pytest_pin = next(
        line.strip().strip('",')
        for line in (REPO / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"pytest==')
    )
    # Not editable, from a copy: what pipx builds, and nothing of the repository leaks in.
    source = shutil.copytree(
        REPO / "operator", tmp_path / "operator", ignore=shutil.ignore_patterns("*.egg-info")
    )
    run(
        venv / "bin" / "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        source,
        pytest_pin,
    )

    run(venv / "bin" / "python", "-c", "import testapp_operator.cli.client")
    kopf = subprocess.run([venv / "bin" / "python", "-c", "import kopf"], capture_output=True)
    assert kopf.returncode != 0, "the plugin's install brought Kopf"
    assert "usage: kubectl testapp" in run(venv / "bin" / "kubectl-testapp", "--help").stdout
    # The plugin's unit tests alone, outside the repository (its conftest needs the dev tools).
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(REPO / "tests" / "unit" / "test_cli.py", tests)
    result = run(
        venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", tests, cwd=tmp_path
    )
    assert " passed" in result.stdout
