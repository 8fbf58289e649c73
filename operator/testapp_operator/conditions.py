"""Status conditions and timestamps, the one way every module writes them (pure: no I/O).

- `timestamp(now) -> str`: RFC 3339 in UTC to the second, as the API server writes its own.
- `set_condition(conditions, type_, ok, reason, message, generation, now) -> list[dict]`: the
  conditions with `type_` set (added or replaced in place), like controller-runtime's
  `meta.SetStatusCondition`: `lastTransitionTime` moves only when the status changes, so an
  unchanged world gives equal conditions and the caller can skip the write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any


def timestamp(now: datetime) -> str:
    # timezone.utc, not datetime.UTC: the CLI (Python >= 3.10) stamps its writes with this too.
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    status = "True" if ok else "False"
    before = next((c for c in conditions if c.get("type") == type_), {})
    kept = before.get("status") == status and before.get("lastTransitionTime")
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": kept or timestamp(now),
        "observedGeneration": generation,
    }
    if not before:
        return [*map(dict, conditions), condition]
    return [condition if c is before else dict(c) for c in conditions]
