"""Scale-down without dropping calls: pick the least-busy workers, drain them, release them when idle.

A worker leaves only when its own load report says it is draining with no calls, when it never
reported and is not ready (it holds no calls), or when its drain time is up. Everything here is a
pure function of the workers' state; `kube.py` and `load.py` carry it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DRAIN_STARTED_ANNOTATION = "tandem.dev/drain-started-at"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# Far below the default 0, so the ReplicaSet removes released workers before any other ready pod.
RELEASED_DELETION_COST = -1_000_000


@dataclass(frozen=True)
class Worker:
    """One worker pod as the operator sees it."""

    pod: str
    worker_id: str
    ready: bool
    calls_active: int | None  # None: no fresh load report
    reports_draining: bool = False  # the worker's own report says it stopped taking calls
    drain_started_at: float | None = None  # UTC epoch seconds, from the pod annotation
    released: bool = False  # the deletion cost is already set

    @property
    def draining(self) -> bool:
        return self.drain_started_at is not None

    def may_leave(self, now: float, max_drain_s: float) -> bool:
        """True when removing the pod cannot cut a live call short before its drain time."""
        if self.calls_active is None and not self.ready:
            return True
        if self.drain_started_at is None:
            return False
        if now - self.drain_started_at >= max_drain_s:
            return True
        return self.reports_draining and self.calls_active == 0


@dataclass(frozen=True)
class DrainPlan:
    replicas: int  # the Deployment's replicas now
    start: tuple[Worker, ...] = ()  # ask to stop taking calls; annotate the drain start
    release: tuple[Worker, ...] = ()  # set the deletion cost so the ReplicaSet removes these first
    resume: tuple[Worker, ...] = ()  # demand came back: take calls again, clear the annotations
    waiting: tuple[Worker, ...] = ()  # draining, still holding calls


def _victim_order(worker: Worker) -> tuple[int, int, int]:
    # Workers already draining keep draining (restart-safe); then not-ready ones; then least busy.
    busy = worker.calls_active if worker.calls_active is not None else 1 << 20
    return (0 if worker.draining else 1, 1 if worker.ready else 0, busy)


def plan_drain(workers: Sequence[Worker], desired: int, replicas: int, now: float, max_drain_s: float) -> DrainPlan:
    """What to do so the pool moves from `replicas` towards `desired` workers at `now` (epoch s)."""
    if desired >= replicas:
        resume = tuple(w for w in workers if w.draining or w.released)
        return DrainPlan(replicas=desired, resume=resume)
    victims = sorted(workers, key=_victim_order)[: replicas - desired]
    chosen = {w.pod for w in victims}
    leaving = tuple(w for w in victims if w.may_leave(now, max_drain_s))
    return DrainPlan(
        replicas=replicas - len(leaving),
        start=tuple(w for w in victims if not w.draining and not w.may_leave(now, max_drain_s)),
        release=tuple(w for w in leaving if not w.released),
        resume=tuple(w for w in workers if (w.draining or w.released) and w.pod not in chosen),
        waiting=tuple(w for w in victims if w not in leaving),
    )
