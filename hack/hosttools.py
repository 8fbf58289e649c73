"""The programs the project runs on the host (hack/host-tools.toml): what is missing, and the
one step that installs it.

    python3 hack/hosttools.py install TARGET...   install what the targets need and is missing
    python3 hack/hosttools.py missing TARGET...   print what is missing, one line each (exit 1)

`install` runs apt-get (waiting for the dpkg lock rather than failing on it) when it is root and
has apt-get; otherwise, or when the install fails, it prints one line naming what is missing and
the command that installs it. A target in the table's [optional] section carries on without its
tools (saying what it loses); any other missing tool exits 1. Standard library only: it runs
before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "host-tools.toml"
# apt-get waits this long for another dpkg (an unattended upgrade, a second make) to finish.
DPKG_LOCK_TIMEOUT = 600


@dataclass(frozen=True)
class Tool:
    name: str
    package: str
    targets: tuple[str, ...]
    install: str = ""

    def present(self) -> bool:
        if self.name.startswith("/"):
            return Path(self.name).exists()
        return shutil.which(self.name) is not None

    @property
    def remedy(self) -> str:
        return self.install or f"apt-get install -y {self.package}"


@dataclass(frozen=True)
class Table:
    tools: tuple[Tool, ...]
    includes: dict[str, tuple[str, ...]]
    optional: dict[str, str]
    # Programs the project builds or installs into its own directories, and where they come from.
    project: dict[str, str]

    @classmethod
    def load(cls, path: Path = TABLE) -> Table:
        raw = tomllib.loads(path.read_text())
        tools = tuple(
            Tool(name, spec["package"], tuple(spec["for"]), spec.get("install", ""))
            for name, spec in raw["tool"].items()
        )
        includes = {target: tuple(more) for target, more in raw.get("includes", {}).items()}
        return cls(tools, includes, dict(raw.get("optional", {})), dict(raw.get("project", {})))

    def closure(self, targets: list[str]) -> list[str]:
        """The targets and every target they include, in order, once each."""
        seen: list[str] = []
        pending = list(targets)
        while pending:
            target = pending.pop(0)
            if target not in seen:
                seen.append(target)
                pending += self.includes.get(target, ())
        return seen

    def needed(self, targets: list[str]) -> dict[str, list[Tool]]:
        """The tools of each target (with the ones it includes)."""
        return {
            target: [tool for tool in self.tools if target in tool.targets]
            for target in self.closure(targets)
        }

    def names(self) -> set[str]:
        return {tool.name for tool in self.tools}


def missing(targets: list[str], table: Table | None = None) -> dict[str, list[Tool]]:
    """The tools each target needs and this host lacks (targets with none left out)."""
    table = table or Table.load()
    return {
        target: absent
        for target, tools in table.needed(targets).items()
        if (absent := [tool for tool in tools if not tool.present()])
    }


def apt_install(packages: list[str]) -> str | None:
    """Install Debian packages; None on success, else the last line apt-get printed."""
    wait = ["-o", f"DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT}"]
    install = ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        # A new machine's package lists may be missing or stale.
        subprocess.run(["apt-get", *wait, "update", "-qq"], capture_output=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["apt-get failed"])[-1]


def describe(tools: list[Tool]) -> str:
    return ", ".join(f"{tool.name} ({tool.remedy})" for tool in tools)


def install(targets: list[str], log=print, table: Table | None = None) -> int:
    """Install what the targets need; 0 when every required tool is there afterwards."""
    table = table or Table.load()
    absent = missing(targets, table)
    packages = sorted({t.package for tools in absent.values() for t in tools if t.package})
    if packages and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"Installing {' '.join(packages)} (Debian) for make {' '.join(targets)}")
        if failure := apt_install(packages):
            log(f"apt-get install {' '.join(packages)} failed: {failure}")
        absent = missing(targets, table)
    status = 0
    for target, tools in absent.items():
        if target in table.optional:
            log(f"Without {describe(tools)}: no {table.optional[target]}")
        else:
            log(f"make {' '.join(targets)} needs {describe(tools)}")
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "missing"])
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "install":
        return install(args.targets)
    absent = missing(args.targets)
    for target, tools in absent.items():
        print(f"{target}: {describe(tools)}")
    return 1 if absent else 0


if __name__ == "__main__":
    sys.exit(main())
