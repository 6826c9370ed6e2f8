"""A small read-through cache: in-process by default, Redis when FASTSHIP_REDIS_URL is set.

Values are bytes, usually JSON documents already encoded: a hit is served as it is,
without decoding and encoding it again. A cache that fails (Redis down) behaves as a
miss and logs a warning: it can slow the service down, never break it.

Reads go through ``get_or_load``: concurrent misses of one key in a process share one
load (one query) instead of each running it, so an entry that expires, or a cold
cache, under load costs one query rather than one per waiting request. The loaded
value is stored with ``add`` (only into an empty slot), and a write's ``set`` or
``delete`` detaches the loads already under way for its keys: a request that arrives
after a write never gets a value read before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from app.core.config import Settings

log = logging.getLogger(__name__)


Load = Callable[[], Awaitable[bytes]]


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def get_or_load(self, key: str, load: Load) -> bytes:
        """The cached value of ``key``, or else ``load()``'s, which is then stored."""

    async def set(self, key: str, value: bytes) -> None: ...
    async def add(self, key: str, value: bytes) -> None:
        """Set ``key`` only when it holds nothing: a read that raced with a write
        cannot overwrite what the write stored."""

    async def delete(self, *keys: str) -> None: ...
    async def close(self) -> None: ...


class Loads:
    """The loads under way in this process, by key: the first miss of a key runs its
    load and later misses of the same key wait for that one's result."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    async def run(self, key: str, load: Load) -> bytes:
        pending = self._pending.get(key)
        if pending is not None:
            try:
                # Shielded: a waiter that is cancelled must not cancel everyone's load.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise
                # The request running the load was cancelled: load for ourselves.
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the waiters re-raise it; none is needed to
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        future.set_result(value)
        return value

    def detach(self, keys: Iterable[str]) -> None:
        """Requests from now on start a new load of ``keys`` rather than join one that
        may have read data older than a write."""
        for key in keys:
            self._pending.pop(key, None)


class _ReadThrough:
    """``get_or_load`` over a cache's ``get`` and ``add``."""

    _loads: Loads

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def add(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    async def get_or_load(self, key: str, load: Load) -> bytes:
        value = await self.get(key)
        if value is not None:
            return value

        async def load_and_store() -> bytes:
            loaded = await load()
            await self.add(key, loaded)
            return loaded

        return await self._loads.run(key, load_and_store)


class NullCache:
    async def get(self, key: str) -> bytes | None:
        return None

    async def get_or_load(self, key: str, load: Load) -> bytes:
        return await load()

    async def set(self, key: str, value: bytes) -> None:
        return None

    async def add(self, key: str, value: bytes) -> None:
        return None

    async def delete(self, *keys: str) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryCache(_ReadThrough):
    """LRU with a time-to-live, for one process."""

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._loads = Loads()

    async def get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, payload = entry
        if expires < time.monotonic():
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        return payload

    async def set(self, key: str, value: bytes) -> None:
        self._loads.detach((key,))
        self._store(key, value)

    def _store(self, key: str, value: bytes) -> None:
        now = time.monotonic()
        self._data[key] = (now + self._ttl, value)
        self._data.move_to_end(key)
        # The least recently used entries come first. Entries nobody reads again (the
        # pages of a replaced list generation) end up there: drop them once expired,
        # rather than holding them until the entry limit.
        while self._data:
            oldest, (expires, _) = next(iter(self._data.items()))
            if expires > now and len(self._data) <= self._max:
                break
            del self._data[oldest]

    async def add(self, key: str, value: bytes) -> None:
        if await self.get(key) is None:
            self._store(key, value)

    async def delete(self, *keys: str) -> None:
        self._loads.detach(keys)
        for key in keys:
            self._data.pop(key, None)

    async def close(self) -> None:
        self._data.clear()


class RedisCache(_ReadThrough):
    """Shared by every replica, so that a write on one invalidates reads on all."""

    def __init__(self, url: str, *, ttl: int, prefix: str = "fastship:") -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._ttl = ttl
        self._prefix = prefix
        self._loads = Loads()

    async def get(self, key: str) -> bytes | None:
        try:
            payload = await self._redis.get(self._prefix + key)
        except Exception as exc:
            log.warning("cache get failed", extra={"cache_error": type(exc).__name__})
            return None
        # bytes, since the client does not decode responses.
        return payload.encode() if isinstance(payload, str) else payload

    async def set(self, key: str, value: bytes) -> None:
        self._loads.detach((key,))
        try:
            await self._redis.set(self._prefix + key, value, ex=self._ttl)
        except Exception as exc:
            log.warning("cache set failed", extra={"cache_error": type(exc).__name__})

    async def add(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(self._prefix + key, value, ex=self._ttl, nx=True)
        except Exception as exc:
            log.warning("cache add failed", extra={"cache_error": type(exc).__name__})

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        self._loads.detach(keys)
        try:
            await self._redis.delete(*(self._prefix + key for key in keys))
        except Exception as exc:
            # A lost invalidation leaves a stale entry for at most one TTL.
            log.warning("cache delete failed", extra={"cache_error": type(exc).__name__})

    async def close(self) -> None:
        await self._redis.aclose()


def create_cache(settings: Settings) -> Cache:
    if settings.cache_ttl_seconds == 0:
        return NullCache()
    if settings.redis_url is not None:
        return RedisCache(settings.redis_url.get_secret_value(), ttl=settings.cache_ttl_seconds)
    return MemoryCache(ttl=settings.cache_ttl_seconds, max_entries=settings.cache_max_entries)
