"""A database connection pool that serves waiting requests in the order they asked.

SQLAlchemy's asyncio pool keeps its idle connections in an ``asyncio.Queue``. When a
connection comes back while requests wait, it goes into the queue and the oldest
waiter is woken; but any request that asks before that waiter runs takes it first,
and the woken waiter, finding the queue empty, joins the end of the line again. When
every connection is busy for long, some requests lose that race over and over: with
50 concurrent creates on 15 connections, a few waited more than a second while the
median request took 70 ms.

``FairQueuePool`` is SQLAlchemy's asyncio pool with a queue that hands a returned
connection straight to the oldest waiter, and lets a new request take an idle
connection only when nobody is waiting. Timeouts, overflow and the pool's other
settings are SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

_T = TypeVar("_T")


class HandoffQueue(AsyncAdaptedQueue[_T]):
    """A FIFO of waiters in front of the idle items: no waiter is ever overtaken."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[_T] = deque()
        self._waiters: deque[asyncio.Future[_T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def _has_waiters(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # timed out or cancelled
        return bool(self._waiters)

    def put_nowait(self, item: _T) -> None:
        if self._has_waiters():
            self._waiters.popleft().set_result(item)
            return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        # The pool returns connections without blocking; a full queue is its signal
        # to close an overflow connection.
        self.put_nowait(item)

    def get_nowait(self) -> _T:
        if self._items and not self._has_waiters():
            return self._items.pop() if self.use_lifo else self._items.popleft()
        raise Empty()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        try:
            return self.get_nowait()
        except Empty:
            if not block:
                raise
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_T] = loop.create_future()
        self._waiters.append(waiter)
        # The timeout resolves the waiter itself, and only if nothing was handed to it
        # first: a connection handed over and a timeout in the same turn of the loop
        # cannot both happen. (asyncio.wait_for on Python 3.12 and later may raise
        # TimeoutError for a waiter that was handed a connection in that turn, and the
        # connection was lost.)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await_only(waiter)
        except TimeoutError as err:
            raise Empty() from err
        except BaseException:
            # Cancelled after a connection was handed over: pass it on, not lose it.
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())
            raise
        finally:
            if expiry is not None:
                expiry.cancel()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class FairQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool, serving waiters first come, first served."""

    _queue_class: Any = HandoffQueue
