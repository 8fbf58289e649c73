"""The one API client's credentials order and its REST paths (no API server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testapp_operator import api, kinds

IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def kubeconfig(path: Path, server: str) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def test_an_asked_for_kubeconfig_is_used_even_in_a_pod(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "k", "https://127.0.0.1:6443")

    from_flag = api.load_configuration(path, environ=IN_A_POD)
    from_env = api.load_configuration(environ={**IN_A_POD, "KUBECONFIG": path})

    assert from_flag.host == from_env.host == "https://127.0.0.1:6443"


@pytest.mark.parametrize("source", ["--kubeconfig", "$KUBECONFIG"])
def test_an_asked_for_kubeconfig_that_fails_is_named_and_never_falls_back(
    tmp_path: Path, source: str
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("clusters: [")
    flag = str(broken) if source == "--kubeconfig" else None
    environ = {**IN_A_POD, "KUBECONFIG": str(broken)} if flag is None else IN_A_POD

    with pytest.raises(api.ConfigError) as error:
        api.load_configuration(flag, environ=environ)

    message = str(error.value)
    assert message.startswith(f"no usable kubeconfig at {broken} ({source}): ")
    assert "\n" not in message and "in-cluster" not in message


def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(tmp_path: Path) -> None:
    # No token file here: the in-cluster loader is the one that fails, and says so.
    with pytest.raises(api.ConfigError, match=r"^in-cluster credentials: "):
        api.load_configuration(environ=IN_A_POD)


def test_elsewhere_the_default_kubeconfig_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(api.ConfigError, match=r"^no usable kubeconfig at ~/\.kube/config"):
        api.load_configuration(environ={})

    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube" / "config", "https://127.0.0.2:6443")
    assert api.load_configuration(environ={}).host == "https://127.0.0.2:6443"


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "subresource", "path"),
    [
        (kinds.NAMESPACE, "n", None, "", "/api/v1/namespaces/n"),
        (kinds.POD, None, "n", "", "/api/v1/namespaces/n/pods"),
        (kinds.DEPLOYMENT, "d", "n", "", "/apis/apps/v1/namespaces/n/deployments/d"),
        (kinds.RELEASE, "r", None, "status", "/apis/testapp.dev/v1/testappreleases/r/status"),
        (kinds.RELEASE, "r", "ignored", "", "/apis/testapp.dev/v1/testappreleases/r"),
    ],
)
def test_rest_paths(
    kind: kinds.Kind, name: str | None, namespace: str | None, subresource: str, path: str
) -> None:
    assert kind.path(name, namespace, subresource) == path
