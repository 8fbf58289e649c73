"""What our own writes returned, kept until the watch delivers that version or a newer one.

A reconcile that runs before the watch caught up with our last write must not write again: it
would apply a child a second time, or record the same snapshot under the next number. Bodies
are kept compact, like the indexes keep them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from testapp_operator.drift import compact

Body = dict[str, Any]


class Writes:
    """One release's written objects, by (kind, name)."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str], Body] = {}

    def remember(self, written: Body) -> Body:
        kept = compact(written)
        self._bodies[(kept["kind"], kept["metadata"]["name"])] = kept
        return kept

    def forget(self, kind: str, name: str) -> None:
        """The object is gone (deleted by us, or the watch saw it go)."""
        self._bodies.pop((kind, name), None)

    def fresh(self, kind: str, name: str, observed: Body | None) -> Body | None:
        """The newer of what the watch saw and what our last write returned."""
        written = self._bodies.get((kind, name))
        if written is None:
            return observed
        if observed is None:
            # Not seen by the watch yet (a deletion would have dropped `written`): re-applying
            # it here cost every new release a second Deployment and Namespace write.
            return written
        if _version(written) > _version(observed):
            return written
        del self._bodies[(kind, name)]  # the watch caught up
        return observed

    def revisions(self, observed: Iterable[Body]) -> list[Body]:
        """The ControllerRevisions the watch saw, with the fresher ones we wrote. Without a
        revision we just wrote, the plan would record the same snapshot under the next number."""
        seen = {body["metadata"]["name"]: body for body in observed}
        written = [name for kind, name in self._bodies if kind == "ControllerRevision"]
        for name in {*seen, *written}:
            seen[name] = self.fresh("ControllerRevision", name, seen.get(name))
        return list(seen.values())


def _version(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion", 0))
    except ValueError:
        return 0
