"""The event recorder: core/v1 Events on a release, posted in the background.

Events are telemetry: they go out off the path to the Deployment, and a failed post is logged,
never raised, so it never fails a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from testapp_operator import metrics
from testapp_operator.decide import Event

logger = logging.getLogger("testapp_operator")

Post = Callable[[Mapping[str, Any], str, str, str], Awaitable[None]]


class EventRecorder:
    def __init__(self, post: Post) -> None:
        self._post = post
        self._tasks: set[asyncio.Task[None]] = set()  # a task nobody references may vanish

    def record(self, release: Mapping[str, Any], event: Event) -> None:
        metrics.count_event(event.reason)
        task = asyncio.create_task(self._send(release, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for the events posted so far (tests, shutdown)."""
        await asyncio.gather(*self._tasks)

    async def _send(self, release: Mapping[str, Any], event: Event) -> None:
        try:
            await self._post(release, event.type, event.reason, event.message)
        except Exception as error:
            logger.warning("could not record event %s: %s", event.reason, error)
