"""The work queue: coalescing, one run per release at a time, backoff, requeue, a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from testapp_operator.queue import Result, WorkQueue


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_triggers_before_a_run_coalesce_into_one() -> None:
    async def scenario() -> None:
        runs: list[str] = []

        async def work(key: str) -> Result:
            runs.append(key)
            return Result()

        queue = WorkQueue(work, limit=4)
        for _ in range(5):
            queue.add("a", 0.01)
        queue.add("b")
        await asyncio.sleep(0.05)
        await queue.idle()

        assert sorted(runs) == ["a", "b"]
        assert len(queue) == 0

    run(scenario)


def test_an_earlier_trigger_moves_a_delayed_run_forward() -> None:
    async def scenario() -> None:
        runs: list[float] = []
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def work(key: str) -> Result:
            runs.append(loop.time() - start)
            return Result()

        queue = WorkQueue(work, limit=1)
        queue.add("a", 10)
        queue.add("a")
        await asyncio.sleep(0.05)

        assert len(runs) == 1 and runs[0] < 1
        assert len(queue) == 0

    run(scenario)


def test_a_trigger_during_a_run_runs_again_after_it_never_beside_it() -> None:
    async def scenario() -> None:
        running, overlaps, runs = 0, 0, 0

        async def work(key: str) -> Result:
            nonlocal running, overlaps, runs
            running += 1
            overlaps = max(overlaps, running)
            runs += 1
            if runs == 1:
                queue.add("a")  # a change arrives while this run has read the world
            await asyncio.sleep(0.01)
            running -= 1
            return Result()

        queue = WorkQueue(work, limit=4)
        queue.add("a")
        await asyncio.sleep(0.01)
        await queue.idle()

        assert (runs, overlaps) == (2, 1)

    run(scenario)


def test_a_failing_run_is_retried_with_growing_backoff() -> None:
    async def scenario() -> None:
        times: list[float] = []
        loop = asyncio.get_running_loop()

        async def work(key: str) -> Result:
            times.append(loop.time())
            if len(times) < 3:
                raise RuntimeError("the API server is away")
            return Result()

        # Backoffs long enough that a loaded machine's scheduling delay (this gate also runs
        # inside the operator image's build) cannot blur 0.5 s into 1 s.
        queue = WorkQueue(work, limit=1, first_backoff=0.5)
        queue.add("a")
        await asyncio.sleep(0)
        with_backoff = asyncio.create_task(queue.idle())
        await asyncio.wait_for(with_backoff, timeout=10)

        assert len(times) == 3
        assert 0.49 < times[1] - times[0] < 0.9  # doubling each time
        assert 0.99 < times[2] - times[1] < 1.4

    run(scenario)


def test_requeue_after_is_the_only_way_a_run_schedules_the_next() -> None:
    async def scenario() -> None:
        runs = 0

        async def work(key: str) -> Result:
            nonlocal runs
            runs += 1
            return Result(requeue_after=0.01 if runs < 3 else None)

        queue = WorkQueue(work, limit=1)
        queue.add("a")
        await asyncio.sleep(0.01)
        await queue.idle()

        assert runs == 3

    run(scenario)


def test_at_most_limit_runs_at_once() -> None:
    async def scenario() -> None:
        running, most = 0, 0

        async def work(key: str) -> Result:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1
            return Result()

        queue = WorkQueue(work, limit=3)
        for index in range(10):
            queue.add(f"r{index}")
        await asyncio.sleep(0.01)
        await queue.idle()

        assert most == 3

    run(scenario)


def test_a_trigger_during_a_run_that_asks_to_requeue_is_not_lost() -> None:
    async def scenario() -> None:
        runs = 0

        async def work(key: str) -> Result:
            nonlocal runs
            runs += 1
            if runs == 1:
                queue.add("a")  # the spec changed while this run wrote from an older view
                return Result(requeue_after=10)
            return Result()

        queue = WorkQueue(work, limit=1)
        queue.add("a")
        await asyncio.sleep(0.05)

        assert runs == 2

    run(scenario)
