"""GKE credentials for a GitLab job, from its OIDC id_token, with the standard library only.

The deploy and rollback jobs run in the operator image, which has Python and kubectl-testapp but
no gcloud, curl or kubectl. This module does what `gcloud` would, through Workload Identity
Federation and without any key:
1. Google STS exchanges the job's id_token (GITLAB_OIDC_TOKEN, audience = the provider) for a
   federated access token;
2. IAM Credentials turns it into a short-lived access token of the deployer service account;
3. the GKE API gives the cluster's endpoint and CA;
4. a kubeconfig with that bearer token is written (mode 0600) and its path printed.

    export KUBECONFIG=$(python -m testapp_operator.delivery.gcp kubeconfig $CI_BUILDS_DIR/k)

Settings come from the job's environment: GITLAB_OIDC_TOKEN, GCP_WIF_PROVIDER
(projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>),
GCP_SERVICE_ACCOUNT, GCP_PROJECT, GKE_LOCATION, GKE_CLUSTER. The top half is pure (requests and
the kubeconfig as data); the bottom half sends them.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STS_URL = "https://sts.googleapis.com/v1/token"
IAM_CREDENTIALS_URL = "https://iamcredentials.googleapis.com/v1"
GKE_URL = "https://container.googleapis.com/v1"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SETTINGS = (
    "GITLAB_OIDC_TOKEN",
    "GCP_WIF_PROVIDER",
    "GCP_SERVICE_ACCOUNT",
    "GCP_PROJECT",
    "GKE_LOCATION",
    "GKE_CLUSTER",
)
TIMEOUT_SECONDS = 30


class CredentialsError(Exception):
    """A setting is missing or Google refused: the message says which and why."""


@dataclass(frozen=True)
class Request:
    """One HTTPS call, as data."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    method: str = "POST"


# --- pure: settings, requests, kubeconfig -----------------------------------------------------


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The six settings, or an error naming every missing one."""
    missing = [name for name in SETTINGS if not environ.get(name)]
    if missing:
        raise CredentialsError(
            f"{', '.join(missing)} not set: the job needs an id_token named GITLAB_OIDC_TOKEN "
            "and the project's GCP_*/GKE_* variables (docs/delivery.md), or a KUBECONFIG"
        )
    return {name: environ[name] for name in SETTINGS}


def sts_request(id_token: str, provider: str) -> Request:
    """Exchange the GitLab id_token for a federated token (RFC 8693 token exchange)."""
    form = {
        "audience": f"//iam.googleapis.com/{provider}",
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": SCOPE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "subject_token": id_token,
    }
    return Request(
        STS_URL,
        urllib.parse.urlencode(form).encode(),
        (("Content-Type", "application/x-www-form-urlencoded"),),
    )


def impersonation_request(federated_token: str, service_account: str) -> Request:
    """The deployer service account's access token, for as long as a deploy may wait."""
    body = {"scope": [SCOPE], "lifetime": "1800s"}
    return Request(
        f"{IAM_CREDENTIALS_URL}/projects/-/serviceAccounts/{service_account}:generateAccessToken",
        json.dumps(body).encode(),
        (("Authorization", f"Bearer {federated_token}"), ("Content-Type", "application/json")),
    )


def cluster_request(access_token: str, project: str, location: str, cluster: str) -> Request:
    return Request(
        f"{GKE_URL}/projects/{project}/locations/{location}/clusters/{cluster}",
        b"",
        (("Authorization", f"Bearer {access_token}"),),
        method="GET",
    )


def kubeconfig(cluster: Mapping[str, Any], access_token: str) -> dict[str, Any]:
    """A kubeconfig for the cluster's public endpoint, authenticated by the access token."""
    name = cluster.get("name", "gke")
    try:
        server = f"https://{cluster['endpoint']}"
        ca = cluster["masterAuth"]["clusterCaCertificate"]
    except KeyError as error:
        raise CredentialsError(f"the GKE API's answer for {name} has no {error}") from error
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "deployer", "user": {"token": access_token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "deployer"}}],
        "current-context": name,
    }


# --- I/O --------------------------------------------------------------------------------------


def send(request: Request) -> dict[str, Any]:
    """The JSON answer, or an error with Google's own message (never the tokens)."""
    http = urllib.request.Request(
        request.url, data=request.body or None, headers=dict(request.headers), method=request.method
    )
    try:
        with urllib.request.urlopen(http, timeout=TIMEOUT_SECONDS) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise CredentialsError(f"{request.method} {request.url}: {error.code} {detail}") from error
    except urllib.error.URLError as error:
        raise CredentialsError(f"{request.method} {request.url}: {error.reason}") from error


def write_kubeconfig(path: Path, environ: Mapping[str, str]) -> Path:
    config = settings(environ)
    federated = send(sts_request(config["GITLAB_OIDC_TOKEN"], config["GCP_WIF_PROVIDER"]))
    deployer = send(impersonation_request(federated["access_token"], config["GCP_SERVICE_ACCOUNT"]))
    token = deployer["accessToken"]
    cluster = send(
        cluster_request(token, config["GCP_PROJECT"], config["GKE_LOCATION"], config["GKE_CLUSTER"])
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(kubeconfig(cluster, token), indent=2))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "kubeconfig":
        print("usage: python -m testapp_operator.delivery.gcp kubeconfig PATH", file=sys.stderr)
        return 2
    try:
        print(write_kubeconfig(Path(args[1]), os.environ))
    except CredentialsError as error:
        print(f"error: GKE credentials: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
