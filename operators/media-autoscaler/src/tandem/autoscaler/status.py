"""The pool's status: counts, the decision and its reason, and the three conditions."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tandem.autoscaler.decision import History, Sample


class ConditionType(enum.StrEnum):
    READY = "Ready"
    SCALING_LIMITED = "ScalingLimited"
    METRICS_STALE = "MetricsStale"


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    ok: bool
    reason: str
    message: str = ""


def iso(at: float) -> str:
    """A UTC epoch (seconds) as the RFC 3339 timestamp Kubernetes uses."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(previous: Sequence[Mapping[str, Any]], current: Sequence[Condition], now: float) -> list[dict[str, Any]]:
    """Kubernetes-style conditions; `lastTransitionTime` moves only when a status flips."""
    before = {c.get("type"): c for c in previous}
    result = []
    for condition in current:
        status = "True" if condition.ok else "False"
        old = before.get(condition.type.value) or {}
        changed = old.get("status") != status
        result.append(
            {
                "type": condition.type.value,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": iso(now) if changed else old.get("lastTransitionTime", iso(now)),
            }
        )
    return result


def history_to_status(history: History) -> dict[str, list[list[float]]]:
    return {
        "recommendations": [[s.at, s.workers] for s in history.recommendations],
        "decisions": [[s.at, s.workers] for s in history.decisions],
    }


def history_from_status(status: Mapping[str, Any]) -> History:
    """The history an earlier operator run left in the status (empty when there is none)."""
    saved = status.get("history") or {}

    def samples(key: str) -> tuple[Sample, ...]:
        return tuple(Sample(float(at), int(workers)) for at, workers in saved.get(key, []))

    return History(recommendations=samples("recommendations"), decisions=samples("decisions"))
