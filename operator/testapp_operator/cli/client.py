"""The plugin's API calls, with every failure turned into one readable CliError.

Imported only once a command is about to talk to the API server: the kubernetes client takes most
of the plugin's start time, and `--help`, completion and bad input need none of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from testapp_operator import GROUP, PLURAL, RELEASE_LABEL, api
from testapp_operator.cli.core import RESOURCE, CliError, Exit, TransientError
from testapp_operator.kinds import CONTROLLER_REVISION, POD, RELEASE

# Our writes show up under this manager in managedFields (and in the deployment log's CLIENT).
PLUGIN_FIELD_MANAGER = "kubectl-testapp"

# Raised by the HTTP layer when the API server cannot be reached.
ConnectionFailure = urllib3.exceptions.HTTPError


def _status_message(error: ApiException) -> tuple[str, bool]:
    """The Status message of an API error, and whether the body was a Status at all."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        return (error.body or error.reason or "").strip(), False
    if not isinstance(body, dict) or body.get("kind") != "Status":
        return str(body), False
    return body.get("message") or body.get("reason") or "", True


def api_error(error: ApiException, what: str) -> CliError:
    """One line that names the object and the reason, for each way a request fails."""
    message, is_status = _status_message(error)
    if error.status == 404:
        if what.startswith(RESOURCE) and not is_status:
            return CliError(
                f"{what}: the CRD {PLURAL}.{GROUP} is not installed "
                "(kubectl apply -f crds/ installs it)",
                Exit.NOT_FOUND,
            )
        return CliError(f"{what} not found", Exit.NOT_FOUND)
    if error.status == 403:
        return CliError(f"{what}: forbidden: {message}", Exit.NOT_FOUND)
    if error.status == 401:
        return CliError(
            f"{what}: unauthorized: check the credentials in the kubeconfig", Exit.NOT_FOUND
        )
    if error.status == 422:
        return CliError(f"{what}: rejected: {message}", Exit.USAGE)
    return CliError(f"{what}: {error.status} {error.reason}: {message}")


def connect(kubeconfig: str | None, context: str | None) -> ReleaseClient:
    """Credentials in the one order (api.load_configuration): like kubectl, an asked-for
    kubeconfig that cannot be loaded is an error naming it."""
    try:
        return ReleaseClient(api.connect(kubeconfig, context))
    except api.ConfigError as error:
        raise CliError(f"{error}", Exit.UNREACHABLE) from error


class ReleaseClient:
    """The few reads and writes the plugin makes on TestAppReleases and their revisions."""

    def __init__(self, server: api.Api) -> None:
        self.server = server

    def get_release(self, name: str) -> dict[str, Any]:
        try:
            return self.server.call("GET", RELEASE.path(name))
        except ApiException as error:
            raise api_error(error, f"{RESOURCE} {name}") from error

    def read_release_retrying(self, name: str) -> dict[str, Any]:
        """get_release for wait loops: server errors and lost connections are retried."""
        try:
            return self.server.call("GET", RELEASE.path(name))
        except ApiException as error:
            if error.status is not None and error.status >= 500:
                raise TransientError(f"{error.status} {error.reason}") from error
            raise api_error(error, f"{RESOURCE} {name}") from error
        except ConnectionFailure as error:
            raise TransientError(str(error)) from error

    def list_releases(self) -> list[dict[str, Any]]:
        try:
            return self.server.call("GET", RELEASE.path())["items"]
        except ApiException as error:
            raise api_error(error, f"{RESOURCE} list") from error

    def list_pods(self, release: str) -> list[dict[str, Any]]:
        """The Pods in the release's namespace, as the API returns them."""
        try:
            return self.server.call("GET", POD.path(namespace=release))["items"]
        except ApiException as error:
            raise api_error(error, f"pods of {release}") from error

    def patch_release(
        self, name: str, patch: Mapping[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """A merge patch of the release (`dry_run`: the server validates and admits it, and
        returns the result, but stores nothing)."""
        try:
            return self.server.merge_patch(
                RELEASE.path(name), patch, PLUGIN_FIELD_MANAGER, dry_run=dry_run
            )
        except ApiException as error:
            raise api_error(error, f"{RESOURCE} {name}") from error

    def revision_data(self, release: str, revision: int) -> Any:
        """The snapshot (`data`) of ControllerRevision <release>-<N> in the release namespace."""
        name = f"{release}-{revision}"
        try:
            return self.server.call("GET", CONTROLLER_REVISION.path(name, release))["data"]
        except ApiException as error:
            if error.status == 404:
                raise CliError(
                    f"{RESOURCE} {release} has no revision {revision} "
                    f"(controllerrevision {name} not found in namespace {release}; "
                    f"revisions: {self._revision_numbers(release)})",
                    Exit.NOT_FOUND,
                ) from error
            raise api_error(error, f"controllerrevision {release}/{name}") from error

    def _revision_numbers(self, release: str) -> str:
        try:
            items = self.server.call(
                "GET",
                CONTROLLER_REVISION.path(namespace=release),
                labelSelector=f"{RELEASE_LABEL}={release}",
            )["items"]
        except ApiException:
            return "unknown"
        numbers = sorted(item["revision"] for item in items)
        return ", ".join(map(str, numbers)) or "none"
