"""A per-object work queue: level-triggered reconciles, one at a time per object.

Watch events only say "look at this object again". Bursts of events for one object
coalesce into one more run, runs of different objects proceed concurrently, a failed run
is retried with exponential backoff, and a run may ask to be repeated after a delay (to
poll something that sends no events).
"""

# Kept beside kopf's own handlers: numbers in bench/README.md ("the operator's work queue").

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
logger = logging.getLogger(__name__)

MIN_BACKOFF = 0.5
MAX_BACKOFF = 60.0


@dataclass
class _Slot:
    running: bool = False
    dirty: bool = False
    failures: int = 0
    timer: asyncio.TimerHandle | None = None
    due: float = 0.0


class WorkQueue(Generic[K]):
    """Runs ``reconcile(key)``; its result, if not None, is a delay for the next run."""

    def __init__(self, name: str, reconcile: Callable[[K], Awaitable[float | None]]) -> None:
        self.name = name
        self._reconcile = reconcile
        self._slots: dict[K, _Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def add(self, key: K, delay: float = 0.0) -> None:
        """Reconcile ``key`` now, or after ``delay`` seconds (an earlier request wins)."""
        if self._closed:
            return
        slot = self._slots.setdefault(key, _Slot())
        if delay > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            if slot.timer is not None and slot.due <= due:
                return
            if slot.timer is not None:
                slot.timer.cancel()
            slot.due = due
            slot.timer = loop.call_at(due, self._fire, key)
            return
        if slot.running:
            slot.dirty = True
            return
        slot.running = True
        task = asyncio.create_task(self._run(key, slot), name=f"{self.name}:{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fire(self, key: K) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            slot.timer = None
        self.add(key)

    async def _run(self, key: K, slot: _Slot) -> None:
        try:
            while True:
                slot.dirty = False
                again: float | None
                try:
                    again = await self._reconcile(key)
                    slot.failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    slot.failures += 1
                    again = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** (slot.failures - 1))
                    logger.exception(
                        "reconcile of %s %s failed; retrying in %.1fs",
                        self.name,
                        key,
                        again,
                        extra={"attempt": slot.failures},
                    )
                if not slot.dirty and again:
                    self.add(key, again)
                if not slot.dirty:
                    break
        finally:
            slot.running = False
            if slot.timer is None and not slot.dirty:
                self._slots.pop(key, None)

    @property
    def pending(self) -> int:
        """Objects with a reconcile running or scheduled."""
        return len(self._slots)

    def forget(self, key: K) -> None:
        """Drop pending retries of an object that is gone."""
        slot = self._slots.get(key)
        if slot is None:
            return
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if not slot.running:
            self._slots.pop(key, None)

    async def close(self) -> None:
        """Cancel timers and running reconciles (operator shutdown)."""
        self._closed = True
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots.clear()

    async def idle(self) -> None:
        """Wait until no reconcile is running (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
