"""A small read-through cache: in-process by default, Redis when FASTSHIP_REDIS_URL is set.

Values are bytes, usually JSON documents already encoded: a hit is served as it is,
without decoding and encoding it again. A cache that fails (Redis down) behaves as a
miss and logs a warning: it can slow the service down, never break it.

Reads go through ``get_or_load``: concurrent misses of one key in a process share one
load (one query) instead of each running it, so an entry that expires, or a cold
cache, under load costs one query rather than one per waiting request.

Entries of database rows carry a version that grows with every committed change of
the row (an item's ``updated_at``, an account's token version), and ``put`` replaces
an entry only with a newer version; on Redis the compare and the write are one
script, so they are atomic across replicas. Whichever reaches the cache last, a
read that fetched a row before a write, or the slower of two writes, cannot leave
the older state cached. A deleted row's entry has the version ``TOMBSTONE``, newer
than any. ``PLACEHOLDER`` reserves a version without a value: a write stores one
before it commits, reads treat it as a miss, and only a load of at least that
version replaces it. A write's ``put`` also detaches the loads already under way for
its key: a request that arrives after a write never joins a load that started
before it.

The expiry of a loaded entry counts from the moment its load started: an entry is
never served more than its TTL after the database said what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple, Protocol

from cachetools import TLRUCache

from app.core.config import Settings

log = logging.getLogger(__name__)


# A load returns the row's version and its encoded value.
Load = Callable[[], Awaitable[tuple[int, bytes]]]

# The version of a deleted row's entry: newer than any version a row can have.
TOMBSTONE = 2**53
# A reserved version without a value (see the module's docstring).
PLACEHOLDER = b""


class CacheUnavailableError(Exception):
    """A write that must reach the cache did not."""


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value of ``key``'s entry (None for the placeholder)."""

    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes:
        """The cached value of ``key``, or else ``load()``'s, which is then stored
        (for ``ttl`` seconds, or the cache's TTL) unless a newer one is there."""

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        version: int,
        ttl: float | None = None,
        strict: bool = False,
    ) -> None:
        """Store ``value`` as ``key``'s entry at ``version`` unless the entry holds a
        newer version (or the same one with a value, where ``value`` is the
        placeholder). ``strict``: raise ``CacheUnavailableError`` if it cannot be written,
        rather than log it."""

    async def add(self, key: str, value: bytes) -> None:
        """Set the unversioned ``key`` only when it holds nothing: the first of
        concurrent writers wins."""

    async def delete(self, *keys: str) -> None: ...
    async def close(self) -> None: ...


# No library offers this: cachetools has no async loads; in cashews one cancelled waiter
# cancels everyone's load, and nothing detaches (bench/README.md, "Side by side: the cache").
class SingleFlight:
    """The loads under way in this process, by key: the first miss of a key runs its
    load and later misses of the same key wait for that one's result."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    async def run(self, key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
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
            future.exception()  # retrieved: asyncio logs it when no waiter was there
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


# Neither library compares versions before a write (bench/README.md, "Side by side: the cache").
def _replaces(old_version: int, old_value: bytes, version: int, value: bytes) -> bool:
    """Whether an entry at ``version`` replaces one at ``old_version``."""
    if version != old_version:
        return version > old_version
    return old_value == PLACEHOLDER and value != PLACEHOLDER


class _ReadThrough:
    """``get_or_load`` over a cache's versioned read and ``put``."""

    _loads: SingleFlight
    _ttl: float

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        version: int,
        ttl: float | None = None,
        strict: bool = False,
    ) -> None:
        raise NotImplementedError

    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes:
        value = await self.get(key)
        if value:  # neither missing nor the placeholder
            return value

        async def load_and_store() -> bytes:
            started = time.monotonic()
            version, loaded = await load()
            left = (self._ttl if ttl is None else ttl) - (time.monotonic() - started)
            if left > 0:
                await self._store_loaded(key, loaded, version, left)
            return loaded

        return await self._loads.run(key, load_and_store)

    async def _store_loaded(self, key: str, value: bytes, version: int, ttl: float) -> None:
        await self.put(key, value, version=version, ttl=ttl)


class NullCache:
    async def get(self, key: str) -> bytes | None:
        return None

    async def get_or_load(self, key: str, load: Load, *, ttl: float | None = None) -> bytes:
        return (await load())[1]

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        version: int,
        ttl: float | None = None,
        strict: bool = False,
    ) -> None:
        return None

    async def add(self, key: str, value: bytes) -> None:
        return None

    async def delete(self, *keys: str) -> None:
        return None

    async def close(self) -> None:
        return None


class _Entry(NamedTuple):
    expires: float  # time.monotonic()
    value: bytes
    version: int  # -1: an unversioned entry (``add``)


class MemoryCache(_ReadThrough):
    """LRU with a time-to-live per entry, for one process: the version rule and the
    single-flight loads over cachetools' storage."""

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        # Each write drops every expired entry: those nobody reads again (the pages of
        # a replaced list generation) leave memory before the entry limit pushes them.
        self._entries: TLRUCache[str, _Entry, float] = TLRUCache(
            max_entries, ttu=lambda _key, entry, _now: entry.expires
        )
        self._loads = SingleFlight()

    def _entry(self, key: str) -> _Entry | None:
        # Indexing, not TLRUCache.get (which looks the key up twice more): a hit costs a
        # third as much (bench/README.md, "Side by side: the cache").
        try:
            return self._entries[key]
        except KeyError:  # missing or expired
            return None

    async def get(self, key: str) -> bytes | None:
        entry = self._entry(key)
        return None if entry is None else (entry.value or None)

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        version: int,
        ttl: float | None = None,
        strict: bool = False,
    ) -> None:
        self._loads.detach((key,))
        await self._store_loaded(key, value, version, self._ttl if ttl is None else ttl)

    async def _store_loaded(self, key: str, value: bytes, version: int, ttl: float) -> None:
        entry = self._entry(key)
        if entry is None or _replaces(entry.version, entry.value, version, value):
            self._entries[key] = _Entry(time.monotonic() + ttl, value, version)

    async def add(self, key: str, value: bytes) -> None:
        if self._entry(key) is None:
            self._entries[key] = _Entry(time.monotonic() + self._ttl, value, -1)

    async def delete(self, *keys: str) -> None:
        self._loads.detach(keys)
        for key in keys:
            self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()


# KEYS[1]: the entry; ARGV: version, value, TTL in milliseconds. A versioned entry is
# stored as "<version>:<value>". Lua numbers are doubles: exact up to TOMBSTONE (2^53).
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
local version = tonumber(ARGV[1])
if current then
  local sep = string.find(current, ':', 1, true)
  local old = sep and tonumber(string.sub(current, 1, sep - 1))
  if old then
    if version < old then return 0 end
    if version == old and (sep < #current or #ARGV[2] == 0) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
"""


# Rather than cashews' Redis backend: a compare-and-set, a look in Redis before joining a
# load, less CPU per hit (bench/README.md, "Side by side: the cache").
class RedisCache(_ReadThrough):
    """Shared by every replica, so that a write on one invalidates reads on all."""

    def __init__(self, url: str, *, ttl: float, prefix: str = "fastship:") -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._ttl = ttl
        self._prefix = prefix
        self._loads = SingleFlight()
        self._put_if_newer = self._redis.register_script(_PUT_IF_NEWER)

    async def get(self, key: str) -> bytes | None:
        try:
            stored = await self._redis.get(self._prefix + key)
        except Exception as exc:
            log.warning("cache get failed", extra={"cache_error": type(exc).__name__})
            return None
        if stored is None:
            return None
        raw = stored.encode() if isinstance(stored, str) else stored
        # A versioned entry is "<version>:<value>"; unversioned values have no colon.
        version, sep, value = raw.partition(b":")
        return (value or None) if sep and version.isdigit() else raw

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        version: int,
        ttl: float | None = None,
        strict: bool = False,
    ) -> None:
        self._loads.detach((key,))
        await self._write(key, value, version, self._ttl if ttl is None else ttl, strict=strict)

    async def _store_loaded(self, key: str, value: bytes, version: int, ttl: float) -> None:
        await self._write(key, value, version, ttl, strict=False)

    async def _write(
        self, key: str, value: bytes, version: int, ttl: float, *, strict: bool
    ) -> None:
        try:
            await self._put_if_newer(
                keys=[self._prefix + key], args=[version, value, max(1, int(ttl * 1000))]
            )
        except Exception as exc:
            if strict:
                raise CacheUnavailableError(f"the shared cache did not take {key}") from exc
            log.warning("cache put failed", extra={"cache_error": type(exc).__name__})

    async def add(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(self._prefix + key, value, px=int(self._ttl * 1000), nx=True)
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
