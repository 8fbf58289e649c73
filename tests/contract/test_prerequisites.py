"""A missing prerequisite is one line naming it and what installs it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testapp_dev import scripts

REPO = Path(__file__).resolve().parents[2]
hosttools = scripts.load("hosttools", "hack/hosttools.py")

TABLE = """
[optional]
real-node = "the real node (Pods run on kwok only)"
[includes]
demo = ["real-node"]
[tool.no-such-program-here]
package = "no-such-package"
for = ["demo"]
[tool."/no/such/cni/plugin"]
package = "no-such-cni"
for = ["real-node"]
[tool.sh]
package = "dash"
for = ["demo"]
"""


@pytest.fixture
def table(tmp_path: Path) -> object:
    path = tmp_path / "host-tools.toml"
    path.write_text(TABLE)
    return hosttools.Table.load(path)


def test_a_missing_program_without_root_is_one_line_naming_it_and_its_package(
    table: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    said: list[str] = []

    status = hosttools.install(["demo"], said.append, table)

    assert status == 1
    assert said == [
        "make demo needs no-such-program-here (apt-get install -y no-such-package)",
        "Without /no/such/cni/plugin (apt-get install -y no-such-cni): "
        "no the real node (Pods run on kwok only)",
    ]


def test_an_optional_target_carries_on_without_its_programs(
    table: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    said: list[str] = []
    assert hosttools.install(["real-node"], said.append, table) == 0
    assert said == [
        "Without /no/such/cni/plugin (apt-get install -y no-such-cni): "
        "no the real node (Pods run on kwok only)"
    ]


def test_nothing_missing_says_nothing(table: object) -> None:
    said: list[str] = []
    present = hosttools.Table(
        tuple(t for t in table.tools if t.name == "sh"), table.includes, table.optional, {}
    )
    assert hosttools.install(["demo"], said.append, present) == 0
    assert said == []


def test_a_failed_apt_get_is_one_line_and_the_target_still_says_what_is_missing(
    table: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(hosttools, "apt_install", lambda packages: "E: Unable to locate package")
    said: list[str] = []
    assert hosttools.install(["demo"], said.append, table) == 1
    assert said[0] == "Installing no-such-cni no-such-package (Debian) for make demo"
    assert said[1] == (
        "apt-get install no-such-cni no-such-package failed: E: Unable to locate package"
    )


def test_cluster_up_without_go_is_one_line(tmp_path: Path) -> None:
    """A new machine without Go: the control plane cannot be built, and it says so."""
    path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "go").exists())
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "cluster" / "localcluster.py"), "up"],
        env={
            **os.environ,
            "PATH": path,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "TESTAPP_CLUSTER_DIR": str(tmp_path / "cluster"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: Go is not installed: the local control plane is built from Go modules "
        "(install Go >= 1.26 from go.dev)"
    ]
