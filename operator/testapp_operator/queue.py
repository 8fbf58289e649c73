"""The work queue: when each release is reconciled, like controller-runtime's workqueue.

- `add(key, delay)`: reconcile `key` after `delay` seconds. Triggers coalesce: a run already due
  sooner covers a later trigger, and an earlier trigger moves a later run forward (a spec change
  must not wait for a child event's delay).
- One run per key at a time: a trigger that arrives during a run schedules the next one, since
  the running one may already have read the world.
- At most `limit` runs at once, across keys.
- A run returns `Result(requeue_after)`; a run that raises is retried with exponential backoff,
  never in a hot loop. Nothing else schedules.
A key leaves the queue once it has no run due and no failure to back off from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from testapp_operator import metrics

logger = logging.getLogger("testapp_operator")

FIRST_BACKOFF = 2.0
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class Result:
    """What a reconcile wants next: another look after `requeue_after` seconds, or nothing."""

    requeue_after: float | None = None


@dataclass
class _Key:
    due: float | None = None  # loop time of the next run, None: no run wanted
    timer: asyncio.TimerHandle | None = None
    running: bool = False
    failures: int = 0


class WorkQueue:
    def __init__(
        self,
        work: Callable[[str], Awaitable[Result]],
        limit: int,
        first_backoff: float = FIRST_BACKOFF,
    ) -> None:
        self._work = work
        self._first_backoff = first_backoff
        # Unbounded, 300 new releases each held their bodies and rendered objects while queued
        # behind the API client's threads, and the process kept that peak as resident memory.
        self._slots = asyncio.Semaphore(limit)
        self._keys: dict[str, _Key] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, key: str, delay: float = 0.0) -> None:
        entry = self._keys.setdefault(key, _Key())
        due = asyncio.get_running_loop().time() + delay
        if entry.due is not None and entry.due <= due:
            return
        entry.due = due
        if entry.running:
            return
        if delay <= 0:
            self._start(key, entry)  # a spec change goes out now, not on the loop's next turn
        else:
            self._schedule(key, entry)

    def __len__(self) -> int:
        return len(self._keys)

    async def idle(self) -> None:
        """Wait until no run is due or running (tests)."""
        while self._keys:
            await asyncio.sleep(0.01)

    def _schedule(self, key: str, entry: _Key) -> None:
        assert entry.due is not None
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_at(entry.due, self._start, key, entry)

    def _start(self, key: str, entry: _Key) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        entry.due, entry.timer, entry.running = None, None, True
        task = asyncio.create_task(self._run(key, entry), name=f"reconcile {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, entry: _Key) -> None:
        started = time.monotonic()
        requeue_after: float | None
        try:
            async with self._slots:
                requeue_after = (await self._work(key)).requeue_after
        except Exception as error:
            entry.failures += 1
            requeue_after = min(self._first_backoff * 2 ** (entry.failures - 1), MAX_BACKOFF)
            logger.warning(
                "reconcile of %s failed (attempt %d), retrying in %.0f s: %s",
                key,
                entry.failures,
                requeue_after,
                error,
                extra={"release": key, "reason": "ReconcileError"},
            )
            metrics.RECONCILES.labels(result="error").inc()
        else:
            entry.failures = 0
            metrics.RECONCILES.labels(result="ok").inc()
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            entry.running = False
        if requeue_after is not None:
            due = asyncio.get_running_loop().time() + requeue_after
            entry.due = due if entry.due is None else min(entry.due, due)
        if entry.due is not None:
            self._schedule(key, entry)
        elif entry.failures == 0:
            del self._keys[key]
