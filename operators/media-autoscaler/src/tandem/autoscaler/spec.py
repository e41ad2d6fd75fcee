"""The MediaWorkerPool spec as typed values, validated the way the CRD's schema and CEL rules do.

The API server rejects nonsense at admission (minimum/maximum and x-kubernetes-validations in
`charts/tandem/crds/mediaworkerpools.yaml`); the operator validates again, because a CRD installed
without those rules, or an object stored before they existed, must give a clear condition, not a crash.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "tandem.dev"
VERSION = "v1"
PLURAL = "mediaworkerpools"
KIND = "MediaWorkerPool"


class InvalidSpecError(ValueError):
    """The pool's spec breaks a rule; `problems` lists each as `field: why`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class PolicyType(enum.StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(enum.StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicy(_Model):
    """At most `value` pods (or percent of the replicas) changed per `period_seconds`."""

    type: PolicyType
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(_Model):
    stabilization_window_seconds: int = Field(ge=0, le=3600)
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: tuple[ScalingPolicy, ...] = ()


def _default_scale_up() -> ScalingRules:
    # Kubernetes HPA's default: +100 % or +4 pods per 15 s, whichever is more, no stabilization.
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=(
            ScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
            ScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=15),
        ),
    )


def _default_scale_down() -> ScalingRules:
    # Kubernetes HPA's default: 300 s stabilization, then down to the recommendation at once.
    return ScalingRules(
        stabilization_window_seconds=300,
        policies=(ScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),),
    )


class Behavior(_Model):
    scale_up: ScalingRules = Field(default_factory=_default_scale_up)
    scale_down: ScalingRules = Field(default_factory=_default_scale_down)
    # Relative change of the recommendation below which the replicas are left alone.
    tolerance: float = Field(default=0.1, ge=0, le=1)


class Buffer(_Model):
    """Free capacity kept ahead of load: at least `calls` free slots and `percent` of the capacity."""

    calls: int = Field(default=0, ge=0)
    percent: int = Field(default=0, ge=0, le=90)


class Schedule(_Model):
    """From each `cron` instant (wall clock in `time_zone`) for `duration_minutes`, keep `min_workers`."""

    name: str = Field(min_length=1, max_length=63)
    cron: str
    time_zone: str = "UTC"
    duration_minutes: int = Field(ge=1, le=24 * 60)
    min_workers: int = Field(ge=0)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2026, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class StaleFallback(_Model):
    """When no fresh load report arrived for `after_seconds`: never scale down, and keep at least
    `min_workers` (0: hold the current replicas)."""

    after_seconds: int = Field(default=30, ge=1, le=3600)
    min_workers: int = Field(default=0, ge=0)


class Autoscaling(_Model):
    min_workers: int = Field(ge=0)
    max_workers: int = Field(ge=1)
    buffer: Buffer = Field(default_factory=Buffer)
    behavior: Behavior = Field(default_factory=Behavior)
    schedules: tuple[Schedule, ...] = ()
    sync_interval_seconds: float = Field(default=15, gt=0, le=600)
    fallback: StaleFallback = Field(default_factory=StaleFallback)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_workers > self.max_workers:
            raise ValueError("minWorkers must not exceed maxWorkers")
        for schedule in self.schedules:
            if schedule.min_workers > self.max_workers:
                raise ValueError(f"schedule {schedule.name!r}: minWorkers must not exceed maxWorkers")
        if self.fallback.min_workers > self.max_workers:
            raise ValueError("fallback.minWorkers must not exceed maxWorkers")
        return self


class Capacity(_Model):
    calls_per_worker: int = Field(ge=1, le=1000)


class Drain(_Model):
    max_drain_seconds: int = Field(default=1800, ge=1, le=24 * 3600)


class Spillover(_Model):
    """Neighbour regions, nearest first, that take calls this region cannot."""

    neighbours: tuple[str, ...] = ()


class PoolSpec(_Model):
    region: str = Field(min_length=1, max_length=63)
    image: str = Field(min_length=1)
    # The worker pod template (metadata/spec), merged under the operator's labels and env.
    template: dict[str, Any] = Field(default_factory=dict)
    capacity: Capacity
    autoscaling: Autoscaling
    drain: Drain = Field(default_factory=Drain)
    spillover: Spillover = Field(default_factory=Spillover)
    # Set by an external scaler (HPA, KEDA) through the scale subresource: a floor on the workers.
    replicas: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _not_own_neighbour(self) -> PoolSpec:
        if self.region in self.spillover.neighbours:
            raise ValueError("spillover.neighbours must not contain the pool's own region")
        return self


def parse_spec(spec: Mapping[str, Any]) -> PoolSpec:
    """Validate a MediaWorkerPool's `spec` mapping; raises `InvalidSpecError` naming each problem."""
    try:
        return PoolSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise InvalidSpecError(problems) from None
