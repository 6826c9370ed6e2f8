"""Cache keys of items, shared by the services that write items (users' deletes too).

An item's entry holds its encoded JSON document. Pages of item lists are cached under
a "generation" of the set of items they read from (one owner's, or everyone's for
admins): a write replaces the generation, which leaves every page cached under the
old one unreachable, so a page is never served after a write to the items it lists.
"""

from __future__ import annotations

import uuid

from app.core.cache import Cache


def item_key(item_id: uuid.UUID) -> str:
    return f"item:{item_id}"


# What the cache holds for an item that does not exist (deleted, or never was): ids
# are never reused, so a read may keep answering 404 from it until it expires. A
# delete stores it, rather than dropping the entry, so that a read that fetched the
# row just before the delete cannot put it back.
GONE = b"gone"


def _generation_key(scope: str) -> str:
    return f"items:generation:{scope}"


async def generation(cache: Cache, scope: str) -> str:
    key = _generation_key(scope)
    current = await cache.get(key)
    if current is None:
        # Requests that find no generation at the same time (on any replica, with
        # Redis) agree on one: the first stored wins, so their pages are shared.
        await cache.add(key, uuid.uuid4().hex.encode())
        current = await cache.get(key) or uuid.uuid4().hex.encode()
    return current.decode()


async def invalidate_lists(cache: Cache, owner_id: uuid.UUID) -> None:
    await cache.delete(_generation_key(str(owner_id)), _generation_key("all"))
