"""TestAppReleases as tests and benchmarks write them."""

from __future__ import annotations

import uuid
from typing import Any

from testapp_operator import API_VERSION, KIND

IMAGE = "registry.example.com/test-app"


def unique(prefix: str = "rel") -> str:
    """A release name no other test uses: tests share one control plane."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def manifest(name: str, tag: str = "1.0.0", env: str = "dev", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"env": env, "image": IMAGE, "tag": tag, **spec},
    }


def is_ready_at(body: dict[str, Any], tag: str) -> bool:
    """Ready, for the release's current generation, running `tag`."""
    status = body.get("status") or {}
    return (
        status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("phase") == "Ready"
        and status.get("image") == f"{IMAGE}:{tag}"
    )
