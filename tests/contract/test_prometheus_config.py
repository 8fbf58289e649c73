"""hack/cluster/prometheus.py's pure half: the scrape configuration it writes. Not in tests/unit:
the operator image's build runs tests/unit, which has no testapp_dev or hack/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testapp_dev import scripts
from testapp_operator import canary

prometheus = scripts.load("prometheus", "hack/cluster/prometheus.py")
CA = Path("/pki/ca.crt")


def pod_job(**access: object) -> dict:
    kubernetes = prometheus.KubernetesAccess(server="https://127.0.0.1:6443", ca_file=CA, **access)
    return yaml.safe_load(prometheus.prometheus_config(kubernetes))["scrape_configs"][0]


def test_the_series_carry_the_labels_the_canary_puts_on_its_pods() -> None:
    copied = dict(prometheus.POD_LABELS)

    assert copied[canary.TRACK_LABEL] == "track"
    assert copied[canary.REVISION_LABEL] == "revision"


def test_a_pod_label_becomes_the_discovery_meta_label() -> None:
    assert (
        prometheus.meta_label("testapp.dev/track")
        == "__meta_kubernetes_pod_label_testapp_dev_track"
    )
    assert (
        prometheus.meta_label("app.kubernetes.io/instance")
        == "__meta_kubernetes_pod_label_app_kubernetes_io_instance"
    )


def test_a_token_logs_in_as_a_bearer_and_a_node_narrows_the_pods() -> None:
    job = pod_job(token_file=Path("/t/token"), node_name="node-a")

    discovery = job["kubernetes_sd_configs"][0]
    assert discovery["authorization"] == {"credentials_file": "/t/token"}
    assert discovery["tls_config"] == {"ca_file": str(CA)}
    assert discovery["selectors"] == [{"role": "pod", "field": "spec.nodeName=node-a"}]


def test_a_client_certificate_logs_in_through_tls() -> None:
    job = pod_job(cert_file=Path("/c.crt"), key_file=Path("/c.key"))

    discovery = job["kubernetes_sd_configs"][0]
    assert "authorization" not in discovery and "selectors" not in discovery
    assert discovery["tls_config"] == {
        "ca_file": str(CA),
        "cert_file": "/c.crt",
        "key_file": "/c.key",
    }


def test_only_pods_that_ask_to_be_scraped_and_run_are_kept() -> None:
    keeps = [
        rule
        for rule in pod_job(token_file=Path("/t"))["relabel_configs"]
        if rule.get("action") == "keep"
    ]

    assert keeps == [
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "regex": "true",
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
    ]


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ({}, "exactly one way to log in"),
        (
            {"token_file": Path("/t"), "cert_file": Path("/c"), "key_file": Path("/k")},
            "exactly one",
        ),
        ({"cert_file": Path("/c")}, "both or neither"),
    ],
)
def test_the_api_server_access_needs_one_way_to_log_in(access: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prometheus.KubernetesAccess(server="https://127.0.0.1:6443", ca_file=CA, **access)


def test_the_api_server_is_reached_over_https_only() -> None:
    with pytest.raises(ValueError, match="server: an https:// URL"):
        prometheus.KubernetesAccess(server="http://127.0.0.1:8080", ca_file=CA, token_file=CA)


def test_static_targets_keep_their_labels_and_one_job_per_metrics_path() -> None:
    config = prometheus.prometheus_config(
        static=[
            prometheus.StaticTarget("127.0.0.1:1", {"track": "stable"}),
            prometheus.StaticTarget("127.0.0.1:2", {"track": "canary"}),
            prometheus.StaticTarget("127.0.0.1:3", metrics_path="/other"),
        ],
        scrape_interval_seconds=2,
    )

    document = yaml.safe_load(config)
    assert document["global"] == {
        "scrape_interval": "2s",
        "scrape_timeout": "2s",
        "evaluation_interval": "2s",
    }
    assert [
        (job["job_name"], job["metrics_path"], job["static_configs"])
        for job in document["scrape_configs"]
    ] == [
        (
            "static-0",
            "/metrics",
            [
                {"targets": ["127.0.0.1:1"], "labels": {"track": "stable"}},
                {"targets": ["127.0.0.1:2"], "labels": {"track": "canary"}},
            ],
        ),
        ("static-1", "/other", [{"targets": ["127.0.0.1:3"], "labels": {}}]),
    ]


def test_prometheus_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        prometheus.start(
            tmp_path / "p", tmp_path / "c", tmp_path / "d", "0.0.0.0:9090", tmp_path / "l"
        )
