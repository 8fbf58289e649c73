"""Render the objects a release produces, for the scanner: TestAppRelease manifests in (the
output of `kubectl kustomize k8s/overlays/<env>`, several documents allowed), the Namespace,
Deployment, Service, NetworkPolicies and first ControllerRevision of each out, as YAML.

    kubectl kustomize k8s/overlays/prd | python hack/checkov/render_releases.py --image I --tag T \
        --digest D

The overlays carry no image or tag (CI supplies image, tag and digest), so they are given here, as
the pipeline deploys them: a release is scanned as it runs, by digest.
"""

from __future__ import annotations

import argparse
import sys

import yaml
from testapp_operator import render
from testapp_operator.release import Release
from testapp_operator.revisions import Revision


def rendered(manifest: dict, image: str, tag: str, digest: str) -> list[dict]:
    body = {
        **manifest,
        "metadata": {**manifest["metadata"], "uid": "00000000-0000-0000-0000-000000000000"},
        "spec": {**manifest["spec"], "image": image, "tag": tag, "digest": digest},
    }
    release = Release.from_body(body)
    revision = Revision(1, release.snapshot)
    running = render.Running.only(release, revision)
    return [*render.children(release, running), render.controller_revision(release, revision)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--digest", required=True)
    args = parser.parse_args()
    manifests = [doc for doc in yaml.safe_load_all(sys.stdin) if doc]
    releases = [m for m in manifests if m.get("kind") == "TestAppRelease"]
    if not releases:
        sys.exit("render_releases.py: no TestAppRelease on stdin")
    objects = [obj for m in releases for obj in rendered(m, args.image, args.tag, args.digest)]
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
