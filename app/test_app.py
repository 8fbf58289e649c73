"""Unit tests of test-app's routes through hug.test (no server, no network)."""

import json
from types import SimpleNamespace

import hug
import pytest
from prometheus_client import REGISTRY

import app
import metrics
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


def test_a_good_build_has_no_fault() -> None:
    assert app.Settings.from_env({"TESTAPP_FAULT": ""}).fault_status is None


@pytest.mark.parametrize("status", ["500", "503", "599"])
def test_testapp_fault_names_the_status_root_answers_with(status: str) -> None:
    assert app.Settings.from_env({"TESTAPP_FAULT": status}).fault_status == int(status)


@pytest.mark.parametrize("value", ["200", "499", "600", "5xx", "-500", " 500", "true"])
def test_a_testapp_fault_that_is_no_5xx_status_stops_the_start(value: str) -> None:
    with pytest.raises(ValueError, match=r"TESTAPP_FAULT: empty or an HTTP status 500-599"):
        app.Settings.from_env({"TESTAPP_FAULT": value})


def faulty(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    monkeypatch.setattr(app, "SETTINGS", app.Settings("test-app", "dev", "9.9.9", "bad", status))


def test_a_faulty_build_answers_its_status_on_root(monkeypatch: pytest.MonkeyPatch) -> None:
    faulty(monkeypatch, 500)

    response = get("/")

    assert response.status == "500 Internal Server Error"
    assert response.data == {"error": "this build answers 500 (TESTAPP_FAULT)"}


def test_a_faulty_build_still_passes_its_probes_and_reports_its_version(
    monkeypatch: pytest.MonkeyPatch, lifecycle: Lifecycle
) -> None:
    # Only the numbers can tell it from a good build: the rollout itself succeeds.
    faulty(monkeypatch, 503)
    lifecycle.mark_ready()

    assert [get(path).status for path in ("/healthz", "/readyz", "/version", "/metrics")] == [
        "200 OK"
    ] * 4


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


# --- /metrics ---------------------------------------------------------------------------------


def requests_counted(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


def latencies_counted(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("http_request_duration_seconds_count", labels) or 0.0


def test_metrics_answers_the_prometheus_text_format() -> None:
    response = get("/metrics")

    assert response.status == "200 OK"
    assert response.headers_dict["content-type"] == metrics.CONTENT_TYPE
    text = response.data
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text


def test_each_request_is_counted_once_by_method_route_and_status() -> None:
    before = requests_counted("GET", "/version", "200")
    latencies_before = latencies_counted("GET", "/version", "200")

    get("/version")
    get("/version")

    assert requests_counted("GET", "/version", "200") == before + 2
    assert latencies_counted("GET", "/version", "200") == latencies_before + 2


def test_a_refused_method_is_counted_under_the_route_it_asked_for() -> None:
    before = requests_counted("POST", "/version", "405")

    hug.test.call("POST", app, "/version")

    assert requests_counted("POST", "/version", "405") == before + 1


def test_the_errors_of_a_faulty_build_are_counted_as_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faulty(monkeypatch, 500)
    before = requests_counted("GET", "/", "500")

    get("/")

    assert requests_counted("GET", "/", "500") == before + 1


def test_unknown_paths_share_one_route_label_and_never_appear_in_the_metrics() -> None:
    before = requests_counted("GET", metrics.UNMATCHED_ROUTE, "404")

    for path in ("/wp-admin/setup.php", "/a/b/c", "/%E2%82%AC"):
        get(path)

    assert requests_counted("GET", metrics.UNMATCHED_ROUTE, "404") == before + 3
    text = get("/metrics").data
    assert "wp-admin" not in text and "/a/b/c" not in text


def test_the_labels_of_a_request_are_bounded_whatever_the_client_sends() -> None:
    assert metrics.labels_for("BREW", None, "418 I'm a teapot") == {
        "method": "other",
        "route": metrics.UNMATCHED_ROUTE,
        "status": "418",
    }
    assert metrics.labels_for("GET", "/", "200 OK") == {
        "method": "GET",
        "route": "/",
        "status": "200",
    }


def test_the_latency_histogram_observes_the_time_spent() -> None:
    clock = iter([100.0, 100.3])
    middleware = metrics.RequestMetrics(clock=lambda: next(clock))
    request = SimpleNamespace(method="GET", uri_template="/healthz", context=SimpleNamespace())
    response = SimpleNamespace(status="200 OK")
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    bucket = {**labels, "le": "0.25"}
    total_before = REGISTRY.get_sample_value("http_request_duration_seconds_sum", labels) or 0.0
    fast_before = REGISTRY.get_sample_value("http_request_duration_seconds_bucket", bucket) or 0.0

    middleware.process_request(request, response)
    middleware.process_response(request, response, None, True)

    total = REGISTRY.get_sample_value("http_request_duration_seconds_sum", labels)
    assert total == pytest.approx(total_before + 0.3)
    # 0.3 s is slower than the 0.25 s bucket: that bucket did not move.
    assert REGISTRY.get_sample_value("http_request_duration_seconds_bucket", bucket) == fast_before
