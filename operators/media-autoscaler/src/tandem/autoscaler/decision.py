"""How many workers a pool should have: a pure function of observations, spec, history and time.

The shape is Kubernetes HPA's (recommendation, tolerance, stabilization windows, rate policies) with
Agones' buffer (free capacity kept ahead of load) and scheduled floors, plus two safety rules the HPA
lacks: never scale down blind (stale load reports) and never below the capacity live calls occupy.
"""

from __future__ import annotations

import enum
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime

from tandem.autoscaler.schedule import scheduled_floor
from tandem.autoscaler.spec import PolicyType, PoolSpec, ScalingRules, SelectPolicy


class Reason(enum.StrEnum):
    """Why the pool wants the workers it wants (status.desired.reason)."""

    LOAD = "Load"
    WITHIN_TOLERANCE = "WithinTolerance"
    MIN_WORKERS = "MinWorkers"
    SCHEDULE = "Schedule"
    EXTERNAL_SCALER = "ExternalScaler"
    METRICS_STALE = "MetricsStale"
    MAX_WORKERS = "MaxWorkers"
    STABILIZING = "StabilizationWindow"
    RATE_LIMITED = "RateLimited"
    LIVE_CALLS = "LiveCalls"


@dataclass(frozen=True)
class Observation:
    """What the operator sees of a pool at one instant."""

    calls_active: int  # live calls on the pool's workers with fresh reports
    current_workers: int  # the Deployment's replicas, draining workers included
    metrics_stale: bool = False  # no fresh load report: calls_active is not to be trusted
    spillover_in_calls: int = 0  # calls neighbour regions ask this pool to take


@dataclass(frozen=True)
class Sample:
    at: float  # UTC epoch, seconds
    workers: int


@dataclass(frozen=True)
class History:
    """Past recommendations (for stabilization) and decisions (for rate policies), oldest first."""

    recommendations: tuple[Sample, ...] = ()
    decisions: tuple[Sample, ...] = ()

    def record(self, at: float, recommendation: int, workers: int, keep_s: float) -> History:
        """Append one sync's outcome and forget samples older than `keep_s` seconds."""
        horizon = at - keep_s
        return History(
            recommendations=(
                *(s for s in self.recommendations if s.at >= horizon),
                Sample(at, recommendation),
            ),
            decisions=(*(s for s in self.decisions if s.at >= horizon), Sample(at, workers)),
        )


@dataclass(frozen=True)
class Decision:
    workers: int
    reason: Reason
    recommendation: int  # before stabilization and rate policies, workers
    required_calls: int  # capacity the pool's own load and buffer ask for, calls
    spillover_out_calls: int  # own demand beyond max workers, for neighbour regions, calls
    limited: bool = False  # held back by maxWorkers or a rate policy (condition ScalingLimited)
    detail: str = field(default="")

    @property
    def message(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


def history_horizon(spec: PoolSpec) -> float:
    """How far back (seconds) `decide` looks into the history."""
    behavior = spec.autoscaling.behavior
    periods = [p.period_seconds for rules in (behavior.scale_up, behavior.scale_down) for p in rules.policies]
    return float(
        max(
            behavior.scale_up.stabilization_window_seconds,
            behavior.scale_down.stabilization_window_seconds,
            *periods,
            0,
        )
    )


def required_calls(calls: int, spec: PoolSpec) -> int:
    """Capacity (calls) that `calls` of demand need with the pool's buffer."""
    buffer = spec.autoscaling.buffer
    by_percent = math.ceil(calls * 100 / (100 - buffer.percent))
    return max(calls + buffer.calls, by_percent)


def _rate_limit(rules: ScalingRules, history: History, current: int, now: float, direction: int) -> int:
    """The furthest the workers may move in `direction` (+1 up, -1 down) at `now` (epoch s): each
    policy allows `value` pods or percent per period from the workers at the period's start
    (the lowest of the period going up, the highest going down); `Max` picks the most change."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    limits = []
    for policy in rules.policies:
        recent = [s.workers for s in history.decisions if s.at > now - policy.period_seconds] + [current]
        base = min(recent) if direction > 0 else max(recent)
        if policy.type is PolicyType.PODS:
            step = policy.value
        else:  # percent: at least one pod up, whole pods down
            step = max(1, math.ceil(base * policy.value / 100)) if direction > 0 else base * policy.value // 100
        limits.append(base + direction * step)
    if not limits:
        return sys.maxsize if direction > 0 else 0  # no policy: no limit
    most_change = max(limits) if direction > 0 else min(limits)
    least_change = min(limits) if direction > 0 else max(limits)
    return most_change if rules.select_policy is SelectPolicy.MAX else least_change


def decide(obs: Observation, spec: PoolSpec, history: History, now: datetime) -> Decision:
    """The workers the pool should have at `now` (aware datetime), and why."""
    scaling = spec.autoscaling
    behavior = scaling.behavior
    per_worker = spec.capacity.calls_per_worker
    at = now.timestamp()
    current = obs.current_workers

    own_required = required_calls(obs.calls_active, spec)
    required = required_calls(obs.calls_active + obs.spillover_in_calls, spec)
    spillover_out = max(0, own_required - scaling.max_workers * per_worker)
    live_floor = math.ceil(obs.calls_active / per_worker)

    # 1. The recommendation: load plus buffer. Tolerance only damps a scale-down: the buffer is a
    # promise, and full workers hide the demand they turn away, so a shortfall is never tolerated.
    recommendation, reason, detail = math.ceil(required / per_worker), Reason.LOAD, f"{required} calls"
    if recommendation < current and (current - recommendation) / current <= behavior.tolerance:
        recommendation, reason = current, Reason.WITHIN_TOLERANCE

    # 2. Floors: min workers, scheduled peaks, an external scaler, stale reports (never down blind).
    schedule_floor, schedule_name = scheduled_floor(scaling.schedules, now)
    floors = [
        (scaling.min_workers, Reason.MIN_WORKERS, ""),
        (schedule_floor, Reason.SCHEDULE, schedule_name or ""),
        (spec.replicas or 0, Reason.EXTERNAL_SCALER, ""),
    ]
    if obs.metrics_stale:
        floors.append((max(current, scaling.fallback.min_workers), Reason.METRICS_STALE, "holding"))
    floor, floor_reason, floor_detail = max(floors, key=lambda f: f[0])
    floor = min(floor, scaling.max_workers)
    if recommendation < floor or obs.metrics_stale:
        recommendation, reason, detail = max(recommendation, floor), floor_reason, floor_detail
    limited = False
    if recommendation > scaling.max_workers:
        recommendation, reason, limited = scaling.max_workers, Reason.MAX_WORKERS, True
        detail = f"{required} calls wanted"

    # 3. Stabilization windows: scale up to the lowest, down to the highest recent recommendation.
    def window(seconds: int) -> list[int]:
        return [s.workers for s in history.recommendations if s.at > at - seconds] + [recommendation]

    # A scale-down stops the tolerance above that, so noise after it does not scale straight up.
    up_to = min(window(behavior.scale_up.stabilization_window_seconds))
    down_to = max(window(behavior.scale_down.stabilization_window_seconds))
    down_to = min(current, math.ceil(down_to * (1 + behavior.tolerance)))
    workers = up_to if current < up_to else down_to if current > down_to else current
    if workers != recommendation:
        reason, detail = Reason.STABILIZING, f"recommended {recommendation}"

    # 4. Rate policies.
    if workers != current:
        direction = 1 if workers > current else -1
        rules = behavior.scale_up if direction > 0 else behavior.scale_down
        limit = _rate_limit(rules, history, current, at, direction)
        if (workers - limit) * direction > 0:
            workers, reason, limited = limit, Reason.RATE_LIMITED, True
            detail = f"recommended {recommendation}"

    # 5. Hard bounds: the floor beats rate policies, live calls beat any scale-down, max beats all.
    if workers < floor:
        workers, reason, detail = floor, floor_reason, floor_detail
    if workers < current and workers < live_floor:
        workers, reason, detail = min(current, live_floor), Reason.LIVE_CALLS, f"{obs.calls_active} calls"
    workers = min(workers, scaling.max_workers)
    return Decision(
        workers=workers,
        reason=reason,
        recommendation=recommendation,
        required_calls=own_required,
        spillover_out_calls=spillover_out,
        limited=limited,
        detail=detail,
    )
