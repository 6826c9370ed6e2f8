"""Status conditions in the Kubernetes style (metav1.Condition): pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
MAX_MESSAGE = 32 * 1024


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (seconds precision, Z suffix)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[Condition],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions for status: ``wanted`` in order, keeping ``lastTransitionTime`` of a
    condition whose status did not change, so that writing the same state twice is a
    no-op. Conditions of other types in ``previous`` are dropped."""
    before = {str(c.get("type")): c for c in previous or () if isinstance(c, Mapping)}
    result: list[dict[str, Any]] = []
    for cond in wanted:
        old = before.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        result.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message[:MAX_MESSAGE],
                "observedGeneration": generation,
                "lastTransitionTime": now
                if changed or not old
                else str(old.get("lastTransitionTime") or now),
            }
        )
    return result


def find(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_`` in a status, or None."""
    for cond in (status or {}).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def status_patch(previous: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``previous`` status into ``wanted``: keys that ``wanted``
    lacks are set to null, so that stale fields (an old message) disappear."""
    patch: dict[str, Any] = dict(wanted)
    for key in previous or {}:
        if key not in wanted:
            patch[key] = None
    return patch
