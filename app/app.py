"""test-app: the small hug web service that the operator releases.

Routes: GET / (greeting), /healthz (liveness), /readyz (readiness), /version (build info).
Served by gunicorn as `app:__hug_wsgi__` with gunicorn.conf.py (which drives readiness).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

import falcon
import hug

from accesslog import AccessLog
from lifecycle import LIFECYCLE, Phase


@dataclass(frozen=True)
class Settings:
    """Read once at import. APP_VERSION and GIT_SHA are baked into the image at build time."""

    name: str
    env: str
    version: str
    git_sha: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            name=environ.get("APP_NAME", "test-app"),
            env=environ.get("APP_ENV", "dev"),
            version=environ.get("APP_VERSION", "0.0.0-dev"),
            git_sha=environ.get("GIT_SHA", "unknown"),
        )


SETTINGS = Settings.from_env()

api = hug.API(__name__)
api.http.add_middleware(AccessLog(app=SETTINGS.name, env=SETTINGS.env))


@hug.get("/")
def root() -> dict[str, str]:
    return {
        "app": SETTINGS.name,
        "env": SETTINGS.env,
        "message": f"Hello from {SETTINGS.name} in {SETTINGS.env}",
    }


@hug.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Deliberately independent of readiness."""
    return {"status": "ok"}


@hug.get("/readyz")
def readyz(response) -> dict[str, str]:
    """Readiness: 503 until the worker has booted and again once SIGTERM starts the drain."""
    phase = LIFECYCLE.phase
    if phase is not Phase.READY:
        response.status = falcon.HTTP_503
    return {"status": phase.value}


@hug.get("/version")
def version() -> dict[str, str]:
    return {"app": SETTINGS.name, "version": SETTINGS.version, "commit": SETTINGS.git_sha}


# Without this, hug answers any unknown URL with its generated API documentation.
@hug.not_found()
def not_found(request) -> dict[str, str]:
    return {"error": "not found", "path": request.path}
