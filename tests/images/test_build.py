"""The images are built for real (podman, the local base image): from a clean clone, with their
unit tests as a gate, from local images only."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from testapp_dev.podman import ROOT, Podman, clean_copy, toolchain

from tests.images.conftest import Images

pytestmark = pytest.mark.images

FAILING_TEST = "\n\ndef test_that_must_stop_the_build() -> None:\n    assert 1 == 2\n"


def test_both_images_build_from_a_clean_clone(podman: Podman, images: Images) -> None:
    assert podman.exists(images.app)
    assert podman.exists(images.operator)


@pytest.mark.parametrize(
    ("dockerfile", "test_file"),
    [("Dockerfile.app", "app/test_app.py"), ("Dockerfile.operator", "tests/unit/test_release.py")],
)
def test_a_failing_unit_test_fails_the_build_and_tags_no_image(
    podman: Podman, tmp_path: Path, dockerfile: str, test_file: str
) -> None:
    tree = clean_copy(tmp_path)
    with (tree / test_file).open("a") as source:
        source.write(FAILING_TEST)
    tag = f"localhost/pytest-gate-{uuid.uuid4().hex[:8]}/image:failing"

    result = podman.build(tree, dockerfile, tag, check=False)

    assert result.returncode != 0
    assert "test_that_must_stop_the_build" in result.stdout + result.stderr
    assert not podman.exists(tag)


def test_a_rebuild_for_another_commit_labels_that_commit(
    podman: Podman, images: Images, tmp_path: Path
) -> None:
    # Every layer but the metadata comes from the cache here; the labels must still be new.
    tag = f"localhost/pytest-rebuild-{uuid.uuid4().hex[:8]}/test-app:other"
    podman.build(clean_copy(tmp_path), "Dockerfile.app", tag, "GIT_SHA=0ther")
    try:
        assert podman.labels(tag)["org.opencontainers.image.revision"] == "0ther"
        assert podman.labels(images.app)["org.opencontainers.image.revision"] == images.git_sha
    finally:
        podman("rmi", tag, check=False)


def test_an_unqualified_name_is_never_pulled(podman: Podman) -> None:
    # The Dockerfiles' upstream default is a short name: here it must fail at once, offline.
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (ROOT / "Dockerfile.app").read_text(), re.M)
    assert default

    result = podman("pull", default[1], check=False, timeout=60)

    assert result.returncode != 0
    assert re.search(r"blocked|short-name|no unqualified-search registries", result.stderr)


def test_the_base_image_carries_no_apt_mirror_address(podman: Podman) -> None:
    mirrors = sorted(apt_mirror_hosts())
    assert mirrors, "this machine's apt sources name no mirror"
    script = f"""
import json, os
found = []
for top in ("/etc/apt", "/var/lib/apt", "/var/cache/apt"):
    for directory, _, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            text = open(path, "rb").read()
            found += [f"{{path}}: {{host}}" for host in {mirrors!r} if host.encode() in text]
print(json.dumps(found))
"""
    assert podman.run_python(podman.base_image, script, user="0") == []


def test_the_base_image_name_follows_its_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # The name is the cache key: the same recipe reuses the image, another one builds anew.
    before = toolchain.base_image_name()
    recipe = {**toolchain.BASE_RECIPE, "include": [*toolchain.BASE_RECIPE["include"], "curl"]}
    monkeypatch.setattr(toolchain, "BASE_RECIPE", recipe)

    assert toolchain.base_image_name() != before


def apt_mirror_hosts() -> set[str]:
    """Host names of the mirrors in this machine's apt sources (read here, never written down)."""
    hosts: set[str] = set()
    for path in toolchain.apt_source_files():
        hosts.update(re.findall(r"\b[a-z][a-z0-9+.-]*://([^/\s:]+)", path.read_text()))
    return hosts
