"""Readiness of one operator replica: the Deployment's readinessProbe (`--readiness`).

Ready means the replica can do its job now:
- the active replica (the live peer of the highest priority) is **watching**: its handlers saw a
  watch event of the peering object within `WATCH_STALE` seconds. Kopf calls no handler before
  every index has its initial listing, nor while the replica is paused, and every peer's
  keep-alive changes that object every few seconds, so a recent event proves the watches stream;
- a standby replica is **ready to take over**: its own keep-alive entry in the peering object is
  fresh, so it reaches the API server with its credentials, and Kopf resumes it within the
  peering lifetime once the active replica's entry expires.
Liveness stays Kopf's own probe (`--liveness`): a standby must not be restarted for waiting.

`readiness(...)` is pure; `serve(...)` is the HTTP endpoint, answering 200 or 503 with the reason.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

# Keep-alives arrive every few seconds (peering lifetime 15 s): this long without one is a stall.
WATCH_STALE = 30.0


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str


def readiness(
    peering_status: Mapping[str, Any] | None,
    priority: int,
    since_watch_event: float | None,
    now: datetime,
) -> Readiness:
    """`peering_status`: the peering object's status (Kopf's peers by identity, each with
    priority, lifetime seconds and lastseen); `since_watch_event`: seconds since the handlers last
    saw the peering object (None: never)."""
    live = [peer for peer in _peers(peering_status) if peer[1] > now]
    if not any(peer[0] == priority for peer in live):
        return Readiness(False, f"no live peering entry of priority {priority} yet")
    if priority < max(peer[0] for peer in live):
        return Readiness(True, "standby: a live peer, ready to take over")
    if since_watch_event is None:
        return Readiness(False, "active: watches not delivering yet (initial listing)")
    if since_watch_event > WATCH_STALE:
        return Readiness(False, f"active: no watch event for {since_watch_event:.0f} s")
    return Readiness(True, "active: watching")


def _peers(status: Mapping[str, Any] | None) -> list[tuple[int, datetime]]:
    """(priority, deadline) of every well-formed entry."""
    peers = []
    for entry in (status or {}).values():
        try:
            lastseen = datetime.fromisoformat(entry["lastseen"])
            deadline = lastseen + timedelta(seconds=int(entry["lifetime"]))
            peers.append((int(entry["priority"]), deadline))
        except (KeyError, TypeError, ValueError):
            continue
    return peers


class WatchClock:
    """When the handlers last saw a watch event (monotonic)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def tick(self) -> None:
        self._last = time.monotonic()

    def since(self) -> float | None:
        return None if self._last is None else time.monotonic() - self._last


async def serve(endpoint: str, check: Callable[[], Awaitable[Readiness]]) -> web.AppRunner:
    """Answer GET <path of endpoint> with 200 when `check()` is ready, 503 otherwise."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme != "http" or not parts.port:
        raise ValueError(f"--readiness: expected http://HOST:PORT/PATH, not {endpoint!r}")

    async def probe(_: web.Request) -> web.Response:
        try:
            verdict = await check()
        except Exception as error:  # the API server is unreachable: not ready, say why
            verdict = Readiness(False, f"cannot read the peering object: {error}")
        return web.Response(status=200 if verdict.ready else 503, text=verdict.message + "\n")

    app = web.Application()
    app.add_routes([web.get(parts.path or "/", probe)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname, parts.port).start()
    return runner
