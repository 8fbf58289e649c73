"""The container toolchain this project builds and runs its images with, when no Docker engine
is there: podman, buildah and runc from Debian, and a local Python base image.

    python hack/containers/toolchain.py install|base-image|base-image-name|registries-conf|env

`install` installs the Debian packages that are missing. `base-image` builds the local base
image if this machine has none for the current recipe, and prints its name.
`base-image-name` only prints the name (it is derived from the recipe, so it is known before the
image exists). `registries-conf` writes the registries.conf podman uses and prints its path.
`env` prints the exports that select the project's podman configuration.

The base image stands in for the Dockerfiles' upstream default (python:3.11-slim-bookworm): the
same Debian release and Python minor version, made with mmdebstrap from the Debian mirror this
machine's apt is configured with, so no container registry is needed. The mirror is read from
the apt sources at run time and the image's own apt sources are emptied: the image carries no
mirror address.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

# hosttools.py, the one list of the host programs and their install step, is one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import hosttools

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
REGISTRIES_CONF = HERE / "registries.conf"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "testapp"
# The machine's own registry configuration; podman reads the drop-in directories whatever
# CONTAINERS_REGISTRIES_CONF says, and their short-name aliases point at upstream registries.
MACHINE_REGISTRIES = [
    Path("/etc/containers/registries.conf"),
    Path("/etc/containers/registries.conf.d"),
    Path.home() / ".config/containers/registries.conf.d",
]

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")]

BASE_REPOSITORY = "localhost/testapp-python"
# Everything that decides the base image's content; its hash names the image, so a change here
# (or in the machine's CA bundle) builds a new one and an unchanged recipe reuses the cached one.
BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    # python-is-python3: the Dockerfiles call `python`, as in the upstream image.
    "include": ["python3.11", "python3.11-venv", "python-is-python3", "ca-certificates"],
    # Like the upstream slim image: no manual pages or documentation.
    "dpkg_options": ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*"],
    "config": [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ],
}


class ToolchainError(RuntimeError):
    """A package could not be installed or the base image not built; the message says why."""


def podman_env() -> dict[str, str]:
    """The environment that selects the project's podman configuration (never /etc's)."""
    return {
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf()),
    }


def machine_registries() -> set[str]:
    """Every registry the machine's podman configuration names: search registries, alias
    targets and [[registry]] entries."""
    files: list[Path] = []
    for location in MACHINE_REGISTRIES:
        files += sorted(location.glob("*.conf")) if location.is_dir() else [location]
    hosts: set[str] = set()
    for path in files:
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        hosts.update(config.get("unqualified-search-registries", []))
        hosts.update(target.split("/")[0] for target in config.get("aliases", {}).values())
        for registry in config.get("registry", []):
            hosts.add((registry.get("prefix") or registry.get("location", "")).split("/")[0])
    return {host for host in hosts if host and not host.startswith(("localhost", "127."))}


def registries_conf() -> Path:
    """The project's registries.conf, with every registry the machine's configuration names
    blocked, so that a short name resolved through the machine's aliases fails at once rather
    than being pulled from outside. Written to the cache (it depends on the machine) when its
    content changes; returns its path."""
    blocked = "".join(
        f'\n[[registry]]\nlocation = "{host}"\nblocked = true\n'
        for host in sorted(machine_registries())
    )
    content = REGISTRIES_CONF.read_text() + blocked
    target = CACHE_DIR / "containers" / "registries.conf"
    if not target.exists() or target.read_text() != content:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}")
        partial.write_text(content)
        partial.rename(target)
    return target


# --- packages -----------------------------------------------------------------------------------


def install(log=print) -> None:
    """Install the missing packages (hack/host-tools.toml, target toolchain), then refresh
    registries.conf: installing podman brings the machine's own registry configuration, whose
    registries it must block."""
    if hosttools.install(["toolchain"], log) != 0:
        raise ToolchainError("the container toolchain is incomplete (see the line above)")
    registries_conf()


# --- base image ---------------------------------------------------------------------------------


def base_image_name() -> str:
    digest = hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode())
    digest.update(HOST_CA_BUNDLE.read_bytes())
    return f"{BASE_REPOSITORY}:3.11-{BASE_RECIPE['suite']}-{digest.hexdigest()[:12]}"


def apt_source_files() -> list[Path]:
    """The machine's apt sources files that name the base image's suite."""
    files: list[Path] = []
    for location in APT_SOURCES:
        candidates = sorted(location.iterdir()) if location.is_dir() else [location]
        for path in candidates:
            if path.suffix not in (".list", ".sources") or not path.is_file():
                continue
            if BASE_RECIPE["suite"] in path.read_text():
                files.append(path)
    if not files:
        raise ToolchainError(
            f"no apt sources for Debian {BASE_RECIPE['suite']} in /etc/apt/sources.list(.d): "
            "the base image is made from this machine's Debian mirror"
        )
    return files


def image_exists(name: str) -> bool:
    result = subprocess.run(
        ["podman", "image", "exists", name], env={**os.environ, **podman_env()}, check=False
    )
    return result.returncode == 0


def build_base_image(log=print) -> str:
    """Build the base image unless this recipe's image exists; return its name."""
    name = base_image_name()
    if image_exists(name):
        return name
    log(f"Building the local base image {name} from Debian packages (about a minute)")
    started = time.monotonic()
    # The chroot's apt sources are removed (they would carry the mirror's address); the host's
    # CA bundle replaces Debian's so pip inside a build trusts what this machine trusts.
    hooks = [
        'rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*',
        f'cp {HOST_CA_BUNDLE} "$1"/etc/ssl/certs/ca-certificates.crt',
    ]
    with tempfile.TemporaryDirectory(prefix="testapp-base-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        command = [
            "mmdebstrap",
            "--quiet",
            f"--variant={BASE_RECIPE['variant']}",
            f"--include={','.join(BASE_RECIPE['include'])}",
            *(f"--dpkgopt={option}" for option in BASE_RECIPE["dpkg_options"]),
            *(f"--customize-hook={hook}" for hook in hooks),
            BASE_RECIPE["suite"],
            str(rootfs),
            *(str(path) for path in apt_source_files()),
        ]
        if subprocess.run(command, check=False).returncode != 0:
            raise ToolchainError(f"mmdebstrap failed: {' '.join(command)}")
        changes = [f"--change={change}" for change in BASE_RECIPE["config"]]
        subprocess.run(
            ["podman", "import", "--quiet", *changes, str(rootfs), name],
            env={**os.environ, **podman_env()},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    log(f"Built {name} in {time.monotonic() - started:.0f} s")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["install", "base-image", "base-image-name", "registries-conf", "env"],
    )
    args = parser.parse_args(argv)
    # Progress goes to stderr: stdout carries only what the command prints for its caller.
    progress = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        if args.command == "install":
            install(progress)
        elif args.command == "base-image":
            install(progress)
            print(build_base_image(progress))
        elif args.command == "base-image-name":
            print(base_image_name())
        elif args.command == "registries-conf":
            print(registries_conf())
        elif args.command == "env":
            for key, value in podman_env().items():
                print(f"export {key}={value}")
    except (ToolchainError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
