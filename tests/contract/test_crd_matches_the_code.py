"""Each rule has one source: the CRD's schema and the constants the operator parses with agree
(the Makefile's guards: tests/pipeline/test_makefile.py). Not in tests/unit: the operator image's
build runs those with operator/ alone, without crds/ or the Makefile."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from testapp_operator import release
from testapp_operator.deploylog import Action
from testapp_operator.release import (
    DEFAULT_INGRESS_FROM,
    DEFAULT_RESOURCES,
    DIGEST_RE,
    ENVS,
    MAX_PEERS,
    TAG_RE,
    Bounds,
)
from testapp_operator.revisions import Outcome
from testapp_operator.status import PHASES

REPO = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "testapp.dev_testappreleases.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]


SPEC = schema()["spec"]["properties"]
STATUS = schema()["status"]["properties"]


def test_the_envs_are_the_crds_enum() -> None:
    assert tuple(SPEC["env"]["enum"]) == ENVS


def test_the_tag_pattern_is_the_crds() -> None:
    assert SPEC["tag"]["pattern"] == TAG_RE.pattern
    assert SPEC["tag"]["maxLength"] == 128


@pytest.mark.parametrize(
    ("field", "bounds"),
    [
        ("replicas", release.REPLICAS),
        ("revisionHistoryLimit", release.HISTORY_LIMIT),
        ("progressDeadlineSeconds", release.PROGRESS_DEADLINE),
        ("revision", release.PIN),
    ],
)
def test_integer_bounds_and_defaults_are_the_crds(field: str, bounds: Bounds) -> None:
    declared = SPEC[field]
    assert Bounds(declared["minimum"], declared.get("maximum"), declared.get("default")) == bounds


def test_the_default_resources_and_paused_are_the_crds() -> None:
    assert SPEC["resources"]["default"] == DEFAULT_RESOURCES.to_data()
    assert SPEC["paused"]["default"] is False
    assert release.Release.__dataclass_fields__["paused"].default is False


def test_label_limits_and_reserved_keys_are_the_crds() -> None:
    labels = SPEC["labels"]
    assert labels["maxProperties"] == release.MAX_LABELS
    values = labels["additionalProperties"]
    assert values["pattern"] == release.LABEL_VALUE_RE.pattern
    assert values["maxLength"] == release.LABEL_VALUE_MAX
    reserved, key_syntax, _ = (rule["rule"] for rule in labels["x-kubernetes-validations"])
    for key in release.RESERVED_LABELS:
        assert f"'{key}'" in reserved
    for prefix in release.RESERVED_LABEL_PREFIXES:
        assert f"k.startsWith('{prefix}')" in reserved
    # The CEL rule's regex is a CEL string literal: `\\` stands for one backslash.
    cel_regex = re.search(r"k\.matches\('(.*)'\)\)$", key_syntax)[1].replace("\\\\", "\\")
    prefix, name = release.LABEL_PREFIX_RE.pattern, release.LABEL_NAME_RE.pattern
    assert cel_regex == f"^({prefix[1:-1]}/)?{name[1:-1]}$"


def test_the_digest_pattern_is_the_crds() -> None:
    assert SPEC["digest"]["pattern"] == DIGEST_RE.pattern
    assert SPEC["digest"]["maxLength"] == len("sha256:") + 64


def test_the_ingress_default_and_bound_are_the_crds() -> None:
    declared = SPEC["ingressFrom"]

    assert declared["default"] == [peer.to_data() for peer in DEFAULT_INGRESS_FROM]
    assert declared["maxItems"] == MAX_PEERS


def test_phases_and_outcomes_are_the_crds_enums() -> None:
    assert tuple(STATUS["phase"]["enum"]) == PHASES
    outcome = STATUS["history"]["items"]["properties"]["outcome"]
    assert outcome["enum"] == [str(o) for o in Outcome]


def test_the_deployment_log_actions_are_the_crds_enum() -> None:
    action = STATUS["deployments"]["items"]["properties"]["action"]
    assert set(action["enum"]) == {str(a) for a in Action}


def test_the_variables_rules_are_the_crds() -> None:
    declared = SPEC["variables"]
    item = declared["items"]
    assert declared["maxItems"] == release.MAX_VARIABLES
    assert declared["x-kubernetes-list-map-keys"] == ["name"]  # names are unique
    assert item["required"] == ["name", "value"]
    assert set(item["properties"]) == {"name", "value"}
    assert item["properties"]["name"]["pattern"] == release.VARIABLE_NAME_RE.pattern
    assert item["properties"]["name"]["maxLength"] == release.VARIABLE_NAME_MAX
    assert item["properties"]["value"]["maxLength"] == release.VARIABLE_VALUE_MAX
    (reserved,) = (rule["rule"] for rule in item["x-kubernetes-validations"])
    assert reserved == f"!(self.name in {list(release.RESERVED_VARIABLES)})"


def test_every_snapshot_field_is_in_the_crd() -> None:
    """A Pod-template field added to the Snapshot without its CRD schema fails here."""
    data = release.Snapshot(
        "r/app", "1", (("a", "b"),), release.DEFAULT_RESOURCES, "sha256:" + "0" * 64, (("A", ""),)
    ).to_data()
    assert set(data) <= set(SPEC)
    assert {f.name for f in fields(release.Snapshot)} == set(data)
