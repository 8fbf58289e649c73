"""Both images run as a non-root user: the final stage of each Dockerfile ends with a numeric,
non-zero USER (what `runAsNonRoot` can verify without resolving names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def final_stage_user(dockerfile: Path) -> str | None:
    """The USER in effect at the end of the last stage (None: root by default)."""
    user = None
    for line in dockerfile.read_text().splitlines():
        words = line.strip().split()
        if not words:
            continue
        if words[0].upper() == "FROM":
            user = None  # each stage starts as its base image's user; ours start as root
        elif words[0].upper() == "USER":
            user = words[1]
    return user


@pytest.mark.parametrize("dockerfile", ["Dockerfile.app", "Dockerfile.operator"])
def test_the_image_runs_as_a_numeric_non_root_user(dockerfile: str) -> None:
    user = final_stage_user(REPO / dockerfile)

    assert user is not None, f"{dockerfile}: the final stage runs as root"
    uid, _, gid = user.partition(":")
    assert re.fullmatch(r"\d+", uid), f"{dockerfile}: USER {user} is not numeric"
    assert int(uid) != 0, f"{dockerfile}: USER {user} is root"
    assert not gid or int(gid) != 0, f"{dockerfile}: USER {user} has group root"
