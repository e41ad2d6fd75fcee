"""One sync of one pool: observe, decide, drain, scale, report. Safe to repeat and to resume
after a restart: drains are remembered in pod annotations, the decision history in the status."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tandem.autoscaler import spillover
from tandem.autoscaler.decision import Decision, History, Observation, decide, history_horizon
from tandem.autoscaler.deployment import deployment_name, owner_reference, pod_labels, worker_deployment
from tandem.autoscaler.drain import (
    DELETION_COST_ANNOTATION,
    DRAIN_STARTED_ANNOTATION,
    RELEASED_DELETION_COST,
    DrainPlan,
    Worker,
    plan_drain,
)
from tandem.autoscaler.kube import Kube, Pod
from tandem.autoscaler.load import LoadBook, PoolLoad
from tandem.autoscaler.spec import GROUP, KIND, VERSION, InvalidSpecError, PoolSpec, parse_spec
from tandem.autoscaler.status import (
    Condition,
    ConditionType,
    conditions,
    history_from_status,
    history_to_status,
    iso,
)
from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.v1.media_pb2 import RegionCapacity, WorkerDrain

logger = logging.getLogger(__name__)

# A pool with an invalid spec is looked at again after this long (seconds), or when its spec changes.
INVALID_SPEC_RECHECK_S = 60.0


@dataclass(frozen=True)
class PoolRef:
    """The identity of a MediaWorkerPool object."""

    namespace: str
    name: str
    uid: str
    generation: int


def _workers(pods: list[Pod], load: PoolLoad) -> list[Worker]:
    workers = []
    for pod in pods:
        report = load.reports.get(pod.name)
        started = pod.annotations.get(DRAIN_STARTED_ANNOTATION)
        workers.append(
            Worker(
                pod=pod.name,
                worker_id=report.worker_id if report else pod.name,
                ready=pod.ready,
                calls_active=report.calls_active if report else None,
                reports_draining=bool(report and report.draining),
                drain_started_at=float(started) if started else None,
                released=DELETION_COST_ANNOTATION in pod.annotations,
            )
        )
    return workers


class PoolScaler:
    """Runs pool syncs against one Kubernetes API and one NATS bus."""

    def __init__(
        self,
        kube: Kube,
        bus: Bus,
        book: LoadBook,
        *,
        capacity_stale_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kube = kube
        self._bus = bus
        self._book = book
        self._capacity_stale_after_s = capacity_stale_after_s
        self._clock = clock
        self._history: dict[tuple[str, str], History] = {}

    def forget(self, pool: PoolRef) -> None:
        """Drop what is remembered of a pool that is gone."""
        self._history.pop((pool.namespace, pool.name), None)

    async def ensure_deployment(self, pool: PoolRef, spec: PoolSpec) -> None:
        """Create the pool's Deployment (at min workers) or bring its template up to the spec."""
        body = worker_deployment(pool.name, pool.namespace, spec, replicas=spec.autoscaling.min_workers)
        body["metadata"]["ownerReferences"] = [owner_reference(f"{GROUP}/{VERSION}", KIND, pool.name, pool.uid)]
        if await self._kube.ensure_deployment(body):
            logger.info("worker deployment created", extra={"pool": pool.name, "namespace": pool.namespace})

    async def report_invalid(self, pool: PoolRef, error: InvalidSpecError, status: Mapping[str, Any]) -> None:
        """Say why the spec is refused, in the Ready condition; change nothing else."""
        ready = Condition(ConditionType.READY, ok=False, reason="InvalidSpec", message=str(error))
        patch = {
            "observedGeneration": pool.generation,
            "conditions": conditions(status.get("conditions") or [], [ready], self._clock()),
        }
        if _differs(status, patch):
            await self._kube.patch_pool_status(pool.namespace, pool.name, patch)
            logger.warning("pool spec invalid", extra={"pool": pool.name, "problems": str(error)})

    async def sync(self, pool: PoolRef, raw_spec: Mapping[str, Any], status: Mapping[str, Any]) -> float:
        """One reconciliation; returns the seconds until the next one."""
        try:
            spec = parse_spec(raw_spec)
        except InvalidSpecError as exc:
            await self.report_invalid(pool, exc, status)
            return INVALID_SPEC_RECHECK_S
        now = self._clock()
        replicas = await self._kube.deployment_replicas(pool.namespace, deployment_name(pool.name))
        if replicas is None:
            await self.ensure_deployment(pool, spec)
            return spec.autoscaling.sync_interval_seconds
        stale_after = spec.autoscaling.fallback.after_seconds
        pods = await self._kube.list_pods(pool.namespace, pod_labels(pool.name))
        load = self._book.pool(spec.region, pool.name, stale_after)
        stale = any(p.ready for p in pods) and not load.reports
        regions = self._book.regions(self._capacity_stale_after_s)
        key = (pool.namespace, pool.name)
        history = self._history.get(key) or history_from_status(status)
        observation = Observation(
            calls_active=load.calls_active,
            current_workers=replicas,
            metrics_stale=stale,
            spillover_in_calls=spillover.demand_for(spec.region, regions),
        )
        decision = decide(observation, spec, history, datetime.fromtimestamp(now, UTC))
        self._history[key] = history.record(now, decision.recommendation, decision.workers, history_horizon(spec))
        plan = plan_drain(_workers(pods, load), decision.workers, replicas, now, spec.drain.max_drain_seconds)
        await self._carry_out(pool, plan, now)
        if plan.replicas != replicas:
            await self._kube.set_replicas(pool.namespace, deployment_name(pool.name), plan.replicas)
            logger.info(
                "workers scaled",
                extra={"pool": pool.name, "from": replicas, "to": plan.replicas, "reason": decision.message},
            )
        await self._publish_capacity(pool, spec, decision, load, plan.replicas, regions)
        patch = self._status(pool, spec, status, decision, plan, pods, load, observation, now)
        if _differs(status, patch):
            await self._kube.patch_pool_status(pool.namespace, pool.name, patch)
        return spec.autoscaling.sync_interval_seconds

    async def _carry_out(self, pool: PoolRef, plan: DrainPlan, now: float) -> None:
        for worker in plan.start:
            # Ask first, then remember: a crash in between only repeats a harmless request.
            await self._drain(worker, drain=True)
            await self._kube.annotate_pod(pool.namespace, worker.pod, {DRAIN_STARTED_ANNOTATION: f"{now:.3f}"})
        for worker in plan.waiting:
            if worker.draining and worker.calls_active is not None and not worker.reports_draining:
                await self._drain(worker, drain=True)  # the first request was lost
        for worker in plan.release:
            await self._kube.annotate_pod(
                pool.namespace, worker.pod, {DELETION_COST_ANNOTATION: str(RELEASED_DELETION_COST)}
            )
        for worker in plan.resume:
            await self._drain(worker, drain=False)
            await self._kube.annotate_pod(
                pool.namespace, worker.pod, {DRAIN_STARTED_ANNOTATION: None, DELETION_COST_ANNOTATION: None}
            )

    async def _drain(self, worker: Worker, *, drain: bool) -> None:
        subject = subjects.join(subjects.MEDIA_WORKER, worker.worker_id, "drain")
        await self._bus.publish(subject, WorkerDrain(worker_id=worker.worker_id, drain=drain))
        logger.info("worker drain requested", extra={"worker": worker.worker_id, "drain": drain})

    async def _publish_capacity(
        self,
        pool: PoolRef,
        spec: PoolSpec,
        decision: Decision,
        load: PoolLoad,
        replicas: int,
        regions: list[RegionCapacity],
    ) -> None:
        per_worker = spec.capacity.calls_per_worker
        room = {r.region: spillover.room(r) for r in regions}
        reported_at = Timestamp()
        reported_at.FromSeconds(int(self._clock()))
        message = RegionCapacity(
            region=spec.region,
            pool=pool.name,
            free_calls=load.free_calls,
            capacity_calls=replicas * per_worker,
            headroom_calls=max(0, spec.autoscaling.max_workers - replicas) * per_worker,
            spillover_demand_calls=decision.spillover_out_calls,
            neighbours=list(spec.spillover.neighbours),
            spillover_to=spillover.allocate(decision.spillover_out_calls, spec.spillover.neighbours, room),
            reported_at=reported_at,
        )
        await self._bus.publish(subjects.join(subjects.CAPACITY, spec.region), message)

    def _status(
        self,
        pool: PoolRef,
        spec: PoolSpec,
        status: Mapping[str, Any],
        decision: Decision,
        plan: DrainPlan,
        pods: list[Pod],
        load: PoolLoad,
        observation: Observation,
        now: float,
    ) -> dict[str, Any]:
        ready = sum(1 for p in pods if p.ready)
        stale = observation.metrics_stale
        limited = decision.limited
        current = [
            Condition(
                ConditionType.READY,
                ok=ready >= plan.replicas,
                reason="WorkersReady" if ready >= plan.replicas else "WorkersStarting",
                message=f"{ready} of {plan.replicas} workers ready",
            ),
            Condition(
                ConditionType.SCALING_LIMITED,
                ok=limited,
                reason=decision.reason.value if limited else "WithinLimits",
                message=decision.message if limited else "",
            ),
            Condition(
                ConditionType.METRICS_STALE,
                ok=stale,
                reason="NoFreshLoadReports" if stale else "LoadReportsFresh",
                message=f"no load report within {spec.autoscaling.fallback.after_seconds} s" if stale else "",
            ),
        ]
        last_scale = iso(now) if plan.replicas != observation.current_workers else status.get("lastScaleTime")
        return {
            "observedGeneration": pool.generation,
            "selector": ",".join(f"{k}={v}" for k, v in pod_labels(pool.name).items()),
            "workers": plan.replicas,
            "ready": ready,
            "busy": load.busy,
            "draining": len(plan.waiting),
            "calls": {
                "active": load.calls_active,
                "capacity": sum(r.capacity for r in load.reports.values()),
            },
            "desired": {
                "workers": decision.workers,
                "reason": decision.reason.value,
                "message": decision.message,
            },
            "spillover": {
                "outCalls": decision.spillover_out_calls,
                "inCalls": observation.spillover_in_calls,
            },
            "lastScaleTime": last_scale,
            "conditions": conditions(status.get("conditions") or [], current, now),
            "history": history_to_status(self._history[(pool.namespace, pool.name)]),
        }


def _differs(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    return any(status.get(key) != value for key, value in patch.items())
