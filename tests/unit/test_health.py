"""The operator's readiness: the active replica is watching, a standby is ready to take over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from testapp_operator.health import WATCH_STALE, Readiness, readiness

NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1, lifetime: int = 15) -> dict:
    lastseen = (NOW - timedelta(seconds=seen_ago)).isoformat(timespec="microseconds")
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen}


def status(*peers: dict) -> dict:
    return {f"operator-{i}": p for i, p in enumerate(peers)}


def test_the_active_replica_is_ready_while_its_watches_deliver() -> None:
    verdict = readiness(status(peer(9), peer(3)), 9, since_watch_event=2.0, now=NOW)

    assert verdict == Readiness(True, "active: watching")


@pytest.mark.parametrize(
    ("since", "message"),
    [
        (None, "active: watches not delivering yet (initial listing)"),
        (WATCH_STALE + 1, f"active: no watch event for {WATCH_STALE + 1:.0f} s"),
    ],
)
def test_the_active_replica_is_not_ready_when_its_watches_are_silent(
    since: float | None, message: str
) -> None:
    assert readiness(status(peer(9), peer(3)), 9, since, NOW) == Readiness(False, message)


def test_a_standby_with_a_fresh_keepalive_is_ready_to_take_over() -> None:
    # Paused by Kopf, it sees no watch event: that is expected of a standby.
    verdict = readiness(status(peer(9), peer(3)), 3, since_watch_event=None, now=NOW)

    assert verdict == Readiness(True, "standby: a live peer, ready to take over")


def test_a_replica_whose_keepalive_expired_is_not_ready() -> None:
    verdict = readiness(status(peer(9), peer(3, seen_ago=20)), 3, None, NOW)

    assert verdict == Readiness(False, "no live peering entry of priority 3 yet")


def test_a_replica_not_yet_in_the_peering_object_is_not_ready() -> None:
    assert not readiness(None, 3, None, NOW).ready
    assert not readiness(status(peer(9)), 3, None, NOW).ready


def test_the_standby_becomes_active_when_the_active_entry_expires() -> None:
    peers = status(peer(9, seen_ago=16), peer(3))

    assert readiness(peers, 3, None, NOW).message.startswith("active")
    assert readiness(peers, 3, 1.0, NOW).ready


def test_malformed_entries_are_ignored() -> None:
    peers = {"a": {"priority": "x"}, "b": None, "c": peer(3)}

    assert readiness(peers, 3, 1.0, NOW).ready
