"""Unit tests of condition merging and the per-object work queue."""

from __future__ import annotations

import asyncio
import itertools

from fastship_operator.conditions import Condition, merge_conditions, status_patch
from fastship_operator.workqueue import WorkQueue


def test_transition_time_changes_only_with_status() -> None:
    first = merge_conditions(None, [Condition("Ready", "False", "A", "m")], generation=1, now="t1")
    same = merge_conditions(first, [Condition("Ready", "False", "B", "n")], generation=2, now="t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("B", 2)
    flipped = merge_conditions(same, [Condition("Ready", "True", "C")], generation=2, now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_status_patch_removes_stale_fields() -> None:
    assert status_patch({"phase": "Failed", "message": "boom"}, {"phase": "Running"}) == {
        "phase": "Running",
        "message": None,
    }


def test_queue_coalesces_bursts_and_serializes_per_key() -> None:
    calls: list[str] = []
    running: set[str] = set()
    overlap: list[str] = []

    async def scenario() -> None:
        first_run_of_a = asyncio.Event()
        release = asyncio.Event()

        async def reconcile(key: str) -> float | None:
            if key in running:
                overlap.append(key)
            running.add(key)
            calls.append(key)
            if key == "a" and not first_run_of_a.is_set():
                first_run_of_a.set()
                await release.wait()
            running.discard(key)
            return None

        queue: WorkQueue[str] = WorkQueue("test", reconcile)
        for _ in range(10):
            queue.add("a")
        queue.add("b")
        await first_run_of_a.wait()
        for _ in range(5):
            queue.add("a")  # while "a" runs: exactly one more run
        release.set()
        await queue.idle()
        assert queue.pending == 0
        await queue.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert not overlap
    assert calls.count("a") == 2
    assert calls.count("b") == 1


def test_queue_retries_failures_and_honours_requeue() -> None:
    attempts: list[float] = []

    async def scenario() -> None:
        fourth = asyncio.Event()

        async def reconcile(key: str) -> float | None:
            attempts.append(asyncio.get_running_loop().time())
            if len(attempts) < 3:
                raise RuntimeError("API server unavailable")
            if len(attempts) == 3:
                return 0.1  # poll once more
            fourth.set()
            return None

        queue: WorkQueue[str] = WorkQueue("test", reconcile)
        queue.add("k")
        await fourth.wait()
        await queue.idle()
        assert queue.pending == 0  # nothing more scheduled after a run that asks for none
        await queue.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.45  # first backoff 0.5 s
    assert gaps[1] >= 0.95  # then 1 s
    assert 0.09 <= gaps[2] < 0.5  # requested requeue


def test_close_cancels_pending_timers() -> None:
    calls: list[str] = []

    async def reconcile(key: str) -> float | None:
        calls.append(key)
        return None

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue("test", reconcile)
        queue.add("later", delay=0.2)
        await queue.close()
        # The loop runs timers in the order they are due: once this one has fired, the
        # queue's would have too.
        after = asyncio.Event()
        asyncio.get_running_loop().call_later(0.25, after.set)
        await after.wait()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert calls == []
