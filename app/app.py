"""test-app: the small hug web service that the operator releases.

Routes: GET / (greeting), /healthz (liveness), /readyz (readiness), /version (build info),
/metrics (Prometheus). Served by gunicorn as `app:__hug_wsgi__` with gunicorn.conf.py (which
drives readiness and the metrics of several workers).

TESTAPP_FAULT=5xx makes `/` answer that status and nothing else change (the probes pass): a
deliberately bad build, baked in with `--build-arg TESTAPP_FAULT=500`, that only the numbers on
/metrics can tell from a good one. The canary's end-to-end test releases it.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

import falcon
import hug

import metrics
from accesslog import AccessLog
from lifecycle import LIFECYCLE, Phase

FAULT_STATUSES = range(500, 600)


@dataclass(frozen=True)
class Settings:
    """Read once at import. APP_VERSION and GIT_SHA are baked into the image at build time."""

    name: str
    env: str
    version: str
    git_sha: str
    fault_status: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            name=environ.get("APP_NAME", "test-app"),
            env=environ.get("APP_ENV", "dev"),
            version=environ.get("APP_VERSION", "0.0.0-dev"),
            git_sha=environ.get("GIT_SHA", "unknown"),
            fault_status=parse_fault(environ.get("TESTAPP_FAULT", "")),
        )


def parse_fault(value: str) -> int | None:
    """TESTAPP_FAULT: empty (a good build) or the 5xx status `/` answers with."""
    if not value:
        return None
    if not value.isdigit() or int(value) not in FAULT_STATUSES:
        raise ValueError(f"TESTAPP_FAULT: empty or an HTTP status 500-599, not {value!r}")
    return int(value)


SETTINGS = Settings.from_env()

api = hug.API(__name__)
api.http.add_middleware(AccessLog(app=SETTINGS.name, env=SETTINGS.env))
api.http.add_middleware(metrics.RequestMetrics())


@hug.format.content_type(metrics.CONTENT_TYPE)
def prometheus_text(data: bytes, request=None, response=None) -> bytes:
    return data


@hug.get("/")
def root(response) -> dict[str, str]:
    if SETTINGS.fault_status is not None:
        response.status = falcon.get_http_status(SETTINGS.fault_status)
        return {"error": f"this build answers {SETTINGS.fault_status} (TESTAPP_FAULT)"}
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


@hug.get("/metrics", output=prometheus_text)
def prometheus_metrics() -> bytes:
    return metrics.exposition()


# Without this, hug answers any unknown URL with its generated API documentation.
@hug.not_found()
def not_found(request) -> dict[str, str]:
    return {"error": "not found", "path": request.path}
