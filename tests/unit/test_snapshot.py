"""A revision snapshot has one serialization (Snapshot.to_data): equality, storage, the CLI's
preview and the event text all follow it. spec.variables is the field that proves it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from testapp_operator import release as release_module
from testapp_operator import render, revisions
from testapp_operator.cli import views
from testapp_operator.release import Release, ReleaseError, Snapshot
from testapp_operator.revisions import Decision, Outcome, Revision, plan
from testapp_operator.rollout import Rollout

IMAGE = "registry.example.com/test-app"
READY_AT_1 = Rollout(revision=1, exists=True, current=True, complete=True)


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "test-app-dev", "uid": "uid-1", "generation": 1},
        "spec": {"env": "dev", "image": IMAGE, "tag": "1.0.0", **spec},
    }


# --- every view follows the one serialization ---------------------------------------------------


@dataclass(frozen=True)
class SnapshotWithNote(Snapshot):
    """A test double: a Snapshot with one more Pod-template field, `note`, serialized like the
    real fields are (to_data, read from a spec and from stored data)."""

    note: str = ""

    def to_data(self) -> dict[str, Any]:
        return {**super().to_data(), "note": self.note}

    @classmethod
    def _read(cls, obj: Any, where: str, resources: Any) -> SnapshotWithNote:
        return replace(super()._read(obj, where, resources), note=obj.get("note", ""))


@pytest.fixture
def noted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release_module, "Snapshot", SnapshotWithNote)
    monkeypatch.setattr(revisions, "Snapshot", SnapshotWithNote)


def test_a_field_added_to_the_snapshot_reaches_every_view(noted: None) -> None:
    first = Release.from_body(body(note="a"))
    stored = render.controller_revision(first, Revision(1, first.snapshot))
    ran = [revisions.Revision.from_controller_revision(stored)]
    changed = Release.from_body(body(note="b"))

    result = plan(changed, ran, READY_AT_1)

    # storage: the revision holds it, and reads back equal
    assert stored["data"]["note"] == "a"
    assert ran[0].snapshot == first.snapshot
    # equality: a new value is a new revision, the same value is none
    assert result.decision is Decision.CREATED
    assert plan(Release.from_body(body(note="a")), ran, READY_AT_1).decision is Decision.UNCHANGED
    # the event text names it
    assert result.message == "revision 2 created: note a -> b"
    # the CLI's preview (kubectl testapp diff --tag) shows it
    preview = views.revision_diff(
        "1", "spec", stored["data"], views.spec_snapshot(body(note="b")["spec"])
    )
    assert "-note: a\n+note: b\n" in preview


# --- spec.variables ---------------------------------------------------------------------------


VARIABLES = [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "_FEATURE_X", "value": ""}]


def test_variables_are_read_in_order() -> None:
    snapshot = Release.from_body(body(variables=VARIABLES)).snapshot

    assert snapshot.variables == (("LOG_LEVEL", "debug"), ("_FEATURE_X", ""))
    assert snapshot.to_data()["variables"] == VARIABLES
    assert Snapshot.from_data(snapshot.to_data()) == snapshot


@pytest.mark.parametrize(
    ("variables", "field", "says"),
    [
        ({"LOG_LEVEL": "debug"}, "spec.variables", "must be a list"),
        (["LOG_LEVEL=debug"], "spec.variables[0]", "must be an object"),
        ([{"name": "1ST"}], "spec.variables[0].name", "must match"),
        ([{"name": "LOG-LEVEL", "value": "x"}], "spec.variables[0].name", "must match"),
        ([{"name": "X" * 129, "value": "x"}], "spec.variables[0].name", "at most 128"),
        ([{"name": "APP_ENV", "value": "prd"}], "spec.variables[0].name", "set by the operator"),
        (
            [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            "spec.variables[1].name",
            "twice",
        ),
        ([{"name": "A"}], "spec.variables[0].value", "must be a string"),
        ([{"name": "A", "value": 1}], "spec.variables[0].value", "must be a string"),
        ([{"name": "A", "value": "x" * 4097}], "spec.variables[0].value", "at most 4096"),
        (
            [{"name": "A", "value": "x", "valueFrom": {}}],
            "spec.variables[0]",
            "only name and value",
        ),
        ([{"name": f"V{i}", "value": ""} for i in range(65)], "spec.variables", "at most 64"),
    ],
)
def test_bad_variables_name_the_field(variables: Any, field: str, says: str) -> None:
    with pytest.raises(ReleaseError) as error:
        Release.from_body(body(variables=variables))

    assert error.value.field == field
    assert says in error.value.message


def test_variables_are_rendered_after_the_operators_own() -> None:
    spec = Release.from_body(body(variables=VARIABLES))

    (container,) = render.deployment(spec, Revision(1, spec.snapshot))["spec"]["template"]["spec"][
        "containers"
    ]

    assert container["env"] == [
        {"name": "APP_ENV", "value": "dev"},
        {"name": "APP_VERSION", "value": "1.0.0"},
        *VARIABLES,
    ]


def test_a_revision_stored_before_variables_existed_reads_back_equal() -> None:
    spec = Release.from_body(body())
    stored = {
        "image": IMAGE,
        "tag": "1.0.0",
        "labels": {},
        "resources": spec.snapshot.resources.to_data(),
    }

    ran = [Revision(1, Snapshot.from_data(stored), Outcome.READY)]

    assert "variables" not in spec.snapshot.to_data()
    assert plan(spec, ran, READY_AT_1).decision is Decision.UNCHANGED


def test_new_variables_are_a_new_revision_and_a_rollback_restores_the_old() -> None:
    old = Release.from_body(body(variables=VARIABLES[:1]))
    new = Release.from_body(body(variables=VARIABLES))
    ran = [Revision(1, old.snapshot, Outcome.READY)]

    created = plan(new, ran, READY_AT_1)
    ran.append(replace(created.create, outcome=Outcome.READY))
    rollback = plan(replace(new, pin=1), ran, replace(READY_AT_1, revision=2))

    assert created.message == "revision 2 created: variables changed"
    assert rollback.target.snapshot.variables == (("LOG_LEVEL", "debug"),)
    env = render.deployment(new, rollback.target)["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {"name": "_FEATURE_X", "value": ""} not in env


def test_the_clis_preview_is_what_the_operator_would_store() -> None:
    spec = Release.from_body(body(labels={"team": "web"}, variables=VARIABLES))

    stored = render.controller_revision(spec, Revision(1, spec.snapshot))["data"]

    assert views.spec_snapshot(body(labels={"team": "web"}, variables=VARIABLES)["spec"]) == stored
