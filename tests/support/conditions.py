"""Kubernetes status conditions, read the same way by every part's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition ``type_`` of an object (or of its ``status`` given alone), or {}
    when it has none."""
    status = obj if obj is not None and "conditions" in obj else (obj or {}).get("status")
    for cond in (status or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def condition_is(
    type_: str, *, status: str | None = None, reason: str | None = None
) -> Callable[[Mapping[str, Any] | None], bool]:
    """A check for waits: the object's condition ``type_`` has this status and reason."""

    def check(obj: Mapping[str, Any] | None) -> bool:
        cond = condition(obj, type_)
        return bool(cond) and (
            (status is None or cond.get("status") == status)
            and (reason is None or cond.get("reason") == reason)
        )

    return check
