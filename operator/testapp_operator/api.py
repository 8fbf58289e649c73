"""The one Kubernetes API client of the operator (kube.py), the installer (delivery/install.py)
and the plugin (cli/client.py): where the credentials come from, and every request by REST path.

Credentials, in one order everywhere (docs/design.md, Talking to the API server):
1. a kubeconfig that was asked for: `--kubeconfig`, else `$KUBECONFIG`. One that cannot be loaded
   is an error naming it: never a fallback to other credentials, which would act on another
   cluster than the one asked for;
2. else the Pod's service account (in-cluster), when running in a Pod;
3. else `~/.kube/config`.

Requests are synchronous (kube.py runs them in its threads). Known kinds find their URL in
kinds.py; any other kind (the installer's manifests) is found by discovery, once per apiVersion.
A response is read to the end, which hands the connection back to the pool: a response left
unread kept its connection, and the next call paid for a new TLS handshake (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from testapp_operator.kinds import BY_KIND, Kind

Body = dict[str, Any]
JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_KUBECONFIG = "~/.kube/config"


class ConfigError(Exception):
    """No usable credentials; the message is one line naming where they were looked for."""


def load_configuration(
    kubeconfig: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> client.Configuration:
    configuration = client.Configuration()
    asked = kubeconfig or environ.get("KUBECONFIG")
    if asked:
        source = "--kubeconfig" if kubeconfig else "$KUBECONFIG"
        _load_kubeconfig(
            configuration, asked, context, f"no usable kubeconfig at {asked} ({source})"
        )
    elif context is None and environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as error:
            raise ConfigError(f"in-cluster credentials: {_reason(error)}") from error
    else:
        path = str(Path(DEFAULT_KUBECONFIG).expanduser())
        where = (
            f"no usable kubeconfig at {DEFAULT_KUBECONFIG} (pass --kubeconfig or set KUBECONFIG)"
        )
        _load_kubeconfig(configuration, path, context, where)
    return configuration


def _load_kubeconfig(
    configuration: client.Configuration, path: str, context: str | None, what: str
) -> None:
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{what}: {_reason(error)}") from error


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()).rstrip(".") or type(error).__name__


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    connections: int | None = None,
    user_agent: str | None = None,
) -> Api:
    """An Api with credentials in the one order; `connections`: pooled connections (one per
    thread that calls it, or calls queue behind the pool's default of four)."""
    configuration = load_configuration(kubeconfig, context)
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    api_client = client.ApiClient(configuration)
    if user_agent is not None:
        api_client.user_agent = user_agent
    return Api(api_client)


class Api:
    """Requests by REST path; objects as plain JSON dicts (never the client's model classes)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.client = api_client
        self._discovered: dict[str, list[Body]] = {}

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        **query: Any,
    ) -> bytes:
        """The response body; an HTTP error status raises ApiException (status, reason, body)."""
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.client.param_serialize(
            method,
            path,
            query_params=[(key, value) for key, value in query.items() if value is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(*request)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response, body=data.decode(errors="replace"))
        return data

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Body:
        return json.loads(self.request(method, path, body, **kwargs))

    def kind(self, api_version: str, kind: str) -> Kind:
        """The kind's REST facts: from kinds.py, else discovered (again once if the first answer
        lacks it: a CRD applied a moment ago); LookupError when the server does not serve it."""
        known = BY_KIND.get((api_version, kind))
        if known is not None:
            return known
        group, _, version = api_version.rpartition("/")
        base = f"/apis/{api_version}" if group else f"/api/{api_version}"
        for fresh in (False, True):
            if fresh or api_version not in self._discovered:
                self._discovered[api_version] = self.call("GET", base)["resources"]
            for resource in self._discovered[api_version]:
                if resource["kind"] == kind and "/" not in resource["name"]:
                    return Kind(kind, group, version, resource["name"], resource["namespaced"])
        raise LookupError(f"the API server does not serve {kind} ({api_version})")

    def path_of(self, obj: Mapping[str, Any], subresource: str = "") -> str:
        metadata = obj["metadata"]
        kind = self.kind(obj["apiVersion"], obj["kind"])
        return kind.path(metadata["name"], metadata.get("namespace"), subresource)

    def get(self, obj: Mapping[str, Any]) -> Body | None:
        """The object named by `obj`'s apiVersion, kind and metadata; None when it is absent."""
        try:
            return self.call("GET", self.path_of(obj))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def apply(self, body: Mapping[str, Any], field_manager: str, *, force: bool = True) -> Body:
        """Server-side apply `body` as `field_manager`; `force` takes over conflicting fields
        (the writer of record: controller-runtime's ForceOwnership)."""
        return self.call(
            "PATCH",
            self.path_of(body),
            dict(body),
            content_type=APPLY_PATCH,
            fieldManager=field_manager,
            force="true" if force else None,
        )

    def merge_patch(
        self,
        path: str,
        patch: Mapping[str, Any],
        field_manager: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Body:
        """A JSON merge patch (`None` values remove fields) of the object, or of its status
        subresource, at `path` (kinds.Kind.path)."""
        return self.call(
            "PATCH",
            path,
            dict(patch),
            content_type=MERGE_PATCH,
            fieldManager=field_manager,
            dryRun="All" if dry_run else None,
        )

    def delete(self, path: str) -> bool:
        """True when this call deleted it, False when it was already gone."""
        try:
            self.request("DELETE", path)
        except ApiException as error:
            if error.status != 404:
                raise
            return False
        return True
