"""GKE credentials from a GitLab id_token: the requests and the kubeconfig, as data."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from testapp_operator.delivery import gcp

ENVIRON = {
    "GITLAB_OIDC_TOKEN": "header.payload.signature",
    "GCP_WIF_PROVIDER": "projects/123/locations/global/workloadIdentityPools/gitlab/providers/p",
    "GCP_SERVICE_ACCOUNT": "deployer-dev@demo.iam.gserviceaccount.com",
    "GCP_PROJECT": "demo",
    "GKE_LOCATION": "europe-west1",
    "GKE_CLUSTER": "apps",
}
CLUSTER = {
    "name": "apps",
    "endpoint": "203.0.113.9",
    "masterAuth": {"clusterCaCertificate": "Q0E="},
}


def test_a_missing_setting_is_named() -> None:
    with pytest.raises(gcp.CredentialsError, match="GCP_WIF_PROVIDER, GKE_CLUSTER not set"):
        gcp.settings(
            {k: v for k, v in ENVIRON.items() if k not in ("GCP_WIF_PROVIDER", "GKE_CLUSTER")}
        )


def test_the_id_token_is_exchanged_for_the_providers_audience() -> None:
    request = gcp.sts_request(ENVIRON["GITLAB_OIDC_TOKEN"], ENVIRON["GCP_WIF_PROVIDER"])
    form = dict(urllib.parse.parse_qsl(request.body.decode()))
    assert request.url == gcp.STS_URL
    assert form["audience"] == f"//iam.googleapis.com/{ENVIRON['GCP_WIF_PROVIDER']}"
    assert form["subject_token"] == ENVIRON["GITLAB_OIDC_TOKEN"]
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"


def test_the_federated_token_impersonates_the_deployer() -> None:
    request = gcp.impersonation_request("federated", ENVIRON["GCP_SERVICE_ACCOUNT"])
    assert request.url.endswith(
        f"/serviceAccounts/{ENVIRON['GCP_SERVICE_ACCOUNT']}:generateAccessToken"
    )
    assert ("Authorization", "Bearer federated") in request.headers


def test_the_kubeconfig_trusts_the_clusters_ca_and_sends_the_token() -> None:
    config = gcp.kubeconfig(CLUSTER, "deployer-token")
    (cluster,) = config["clusters"]
    assert cluster["cluster"] == {
        "server": "https://203.0.113.9",
        "certificate-authority-data": "Q0E=",
    }
    assert config["users"][0]["user"] == {"token": "deployer-token"}
    assert config["current-context"] == "apps"


def test_write_kubeconfig_chains_the_three_calls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    answers = {
        gcp.STS_URL: {"access_token": "federated"},
        "generateAccessToken": {"accessToken": "deployer-token"},
        "clusters/apps": CLUSTER,
    }
    sent: list[gcp.Request] = []

    def send(request: gcp.Request) -> dict:
        sent.append(request)
        return next(answer for key, answer in answers.items() if key in request.url)

    monkeypatch.setattr(gcp, "send", send)
    path = gcp.write_kubeconfig(tmp_path / "kubeconfig", ENVIRON)

    assert [r.method for r in sent] == ["POST", "POST", "GET"]
    assert ("Authorization", "Bearer deployer-token") in sent[2].headers
    assert json.loads(path.read_text())["users"][0]["user"]["token"] == "deployer-token"
    assert path.stat().st_mode & 0o777 == 0o600
