"""The least any controller can do for a tag change, as a reference arm of the latency bench.

It watches releases of a copy of our CRD under another group (same schema, so a release write
costs the same, and the operator ignores them) and patches the new image into the Deployment
named like the release (a copy of the one the operator made, so the write costs the same) the
moment the watch delivers the change: no revision, no status, no server-side apply, no framework.
Whatever it cannot beat, no controller can.

    python bench/bare_controller.py --group bench.testapp.dev   (KUBECONFIG names the cluster)
"""

from __future__ import annotations

import argparse
from typing import Any

import kubernetes

USER_AGENT = "bare-controller"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    kubernetes.config.load_kube_config()
    client = kubernetes.client.ApiClient()
    client.user_agent = USER_AGENT
    custom = kubernetes.client.CustomObjectsApi(client)
    apps = kubernetes.client.AppsV1Api(client)
    deployed: dict[str, str] = {}
    while True:  # a watch that ends (server timeout) starts again
        for event in kubernetes.watch.Watch().stream(
            custom.list_cluster_custom_object, args.group, "v1", "testappreleases"
        ):
            release: dict[str, Any] = event["object"]
            name, spec = release["metadata"]["name"], release["spec"]
            image = f"{spec['image']}:{spec['tag']}"
            if event["type"] == "DELETED" or deployed.get(name) == image:
                continue
            # Only the image of the container `app`, as `kubectl set image` does.
            template = {"spec": {"containers": [{"name": "app", "image": image}]}}
            apps.patch_namespaced_deployment(
                name,
                name,
                {"spec": {"template": template}},
                _content_type="application/strategic-merge-patch+json",
            )
            deployed[name] = image


if __name__ == "__main__":
    main()
