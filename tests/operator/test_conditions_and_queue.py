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

    async def reconcile(key: str) -> float | None:
        if key in running:
            overlap.append(key)
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.05)
        running.discard(key)
        return None

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue("test", reconcile)
        for _ in range(10):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0)
        for _ in range(5):
            queue.add("a")  # while "a" runs: exactly one more run
        await asyncio.sleep(0.3)
        await queue.idle()
        await queue.close()

    asyncio.run(scenario())
    assert not overlap
    assert calls.count("a") == 2
    assert calls.count("b") == 1


def test_queue_retries_failures_and_honours_requeue() -> None:
    attempts: list[float] = []

    async def reconcile(key: str) -> float | None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise RuntimeError("API server unavailable")
        if len(attempts) == 3:
            return 0.1  # poll once more
        return None

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue("test", reconcile)
        queue.add("k")
        await asyncio.sleep(2.5)
        await queue.close()

    asyncio.run(scenario())
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
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert calls == []
