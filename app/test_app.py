"""Unit tests of test-app's routes through hug.test (no server, no network)."""

import json

import hug
import pytest

import app
from lifecycle import Lifecycle, Phase


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> Lifecycle:
    """A fresh lifecycle (starting) per test, so no test sees another's phase."""
    fresh = Lifecycle()
    monkeypatch.setattr(app, "LIFECYCLE", fresh)
    return fresh


def get(path: str) -> hug.test.StartResponseMock:
    return hug.test.get(app, path)


def test_root_greets_with_the_app_name_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "SETTINGS", app.Settings("test-app", "stg", "1.2.3", "abc123"))

    response = get("/")

    assert response.status == "200 OK"
    assert response.headers_dict["content-type"].startswith("application/json")
    assert response.data == {
        "app": "test-app",
        "env": "stg",
        "message": "Hello from test-app in stg",
    }


@pytest.mark.parametrize("phase", list(Phase))
def test_healthz_answers_ok_in_every_phase(lifecycle: Lifecycle, phase: Phase) -> None:
    # Liveness must not follow readiness, or a draining Pod would be restarted.
    if phase is not Phase.STARTING:
        lifecycle.mark_ready()
    if phase is Phase.DRAINING:
        lifecycle.mark_draining()

    response = get("/healthz")

    assert response.status == "200 OK"
    assert response.data == {"status": "ok"}


def test_readyz_is_503_while_starting(lifecycle: Lifecycle) -> None:
    response = get("/readyz")

    assert response.status == "503 Service Unavailable"
    assert response.data == {"status": "starting"}


def test_readyz_is_200_once_ready(lifecycle: Lifecycle) -> None:
    lifecycle.mark_ready()

    response = get("/readyz")

    assert response.status == "200 OK"
    assert response.data == {"status": "ready"}


def test_readyz_is_503_while_draining(lifecycle: Lifecycle) -> None:
    lifecycle.mark_ready()
    lifecycle.mark_draining()

    response = get("/readyz")

    assert response.status == "503 Service Unavailable"
    assert response.data == {"status": "draining"}


def test_a_draining_process_never_becomes_ready_again(lifecycle: Lifecycle) -> None:
    lifecycle.mark_ready()
    lifecycle.mark_draining()

    lifecycle.mark_ready()

    assert get("/readyz").data == {"status": "draining"}


def test_version_reports_the_build_time_version_and_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "SETTINGS", app.Settings("test-app", "prd", "1.4.0", "0123abcd"))

    response = get("/version")

    assert response.status == "200 OK"
    assert response.data == {"app": "test-app", "version": "1.4.0", "commit": "0123abcd"}


def test_settings_come_from_the_environment() -> None:
    environ = {"APP_NAME": "demo", "APP_ENV": "ppd", "APP_VERSION": "2.0.0", "GIT_SHA": "feed"}

    assert app.Settings.from_env(environ) == app.Settings("demo", "ppd", "2.0.0", "feed")


def test_settings_have_defaults_for_every_variable() -> None:
    assert app.Settings.from_env({}) == app.Settings("test-app", "dev", "0.0.0-dev", "unknown")


def test_an_unknown_route_is_a_json_404_not_the_api_documentation() -> None:
    response = get("/no/such/route")

    assert response.status == "404 Not Found"
    assert response.data == {"error": "not found", "path": "/no/such/route"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_write_method_on_a_read_only_route_is_405(method: str) -> None:
    response = hug.test.call(method, app, "/version")

    assert response.status == "405 Method Not Allowed"
    assert "GET" in response.headers_dict["allow"]


def test_every_request_writes_one_json_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    get("/")
    get("/missing")

    lines = capsys.readouterr().out.splitlines()

    records = [json.loads(line) for line in lines]
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("GET", "/", 200),
        ("GET", "/missing", 404),
    ]
    assert all(r["app"] == "test-app" and r["duration_ms"] >= 0 for r in records)
