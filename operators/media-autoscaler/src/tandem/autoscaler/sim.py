"""A day of calls in virtual time, to compare scaling policies before they meet real traffic.

Calls arrive in each market as a Poisson process whose rate follows the market's local day (an
evening peak), last a heavy-tailed (log-normal) time, and go to the busiest worker of their region
with room (packing, so idle workers appear for scale-down), else to the neighbours in priority
order, else they are rejected. Workers start 30-60 s after the replicas rise and leave only through
the same drain as in the cluster (`drain.plan_drain`). A policy is asked for the workers of each
region every sync interval; the operator's policy is `decision.decide` itself.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from tandem.autoscaler import spillover
from tandem.autoscaler.decision import History, Observation, decide, history_horizon
from tandem.autoscaler.drain import Worker, plan_drain
from tandem.autoscaler.spec import PoolSpec

DAY_S = 24 * 3600


@dataclass(frozen=True)
class Market:
    """One region's demand: concurrent calls between `base_calls` at night and `peak_calls` at
    `peak_hour` local time (a bell `peak_width_h` hours wide), in IANA zone `zone`."""

    region: str
    zone: str
    base_calls: float
    peak_calls: float
    neighbours: tuple[str, ...]
    peak_hour: float = 20.5
    peak_width_h: float = 2.0

    def concurrency(self, at: datetime) -> float:
        """Expected concurrent calls at the aware instant `at`."""
        local = at.astimezone(ZoneInfo(self.zone))
        hour = local.hour + local.minute / 60 + local.second / 3600
        distance = min(abs(hour - self.peak_hour), 24 - abs(hour - self.peak_hour))
        daytime = 0.35 * math.exp(-(((hour - 13.0) / 3.0) ** 2))  # a smaller midday hump
        evening = math.exp(-((distance / self.peak_width_h) ** 2) / 2)
        return self.base_calls + (self.peak_calls - self.base_calls) * max(evening, daytime)


@dataclass(frozen=True)
class Call:
    arrive: float  # seconds since the start of the day
    duration: float  # seconds
    region: str


@dataclass(frozen=True)
class SimConfig:
    markets: tuple[Market, ...]
    start: datetime  # aware, the first instant simulated
    calls_per_worker: int = 8
    sync_s: float = 15.0
    startup_s: tuple[float, float] = (30.0, 60.0)
    median_call_s: float = 240.0
    call_sigma: float = 1.0  # of the log-normal: mean = median * exp(sigma^2 / 2)
    max_call_s: float = 2 * 3600.0
    max_drain_s: float = 1800.0
    # Simulated before the day and left out of every figure, so the day starts in a steady state.
    warmup_s: float = 3600.0
    seed: int = 5

    @property
    def mean_call_s(self) -> float:
        return min(self.max_call_s, self.median_call_s * math.exp(self.call_sigma**2 / 2))


def generate_calls(config: SimConfig) -> list[Call]:
    """Arrivals of one day, all markets, by thinning a Poisson process at each market's peak rate."""
    rng = random.Random(config.seed)  # noqa: S311 - a reproducible simulation, not a secret
    calls = []
    for market in config.markets:
        peak_rate = market.peak_calls / config.mean_call_s * 1.05  # arrivals per second, a bound
        t = -config.warmup_s
        while True:
            t += rng.expovariate(peak_rate)
            if t >= DAY_S:
                break
            rate = market.concurrency(config.start + timedelta(seconds=t)) / config.mean_call_s
            if rng.random() < rate / peak_rate:
                duration = min(config.max_call_s, rng.lognormvariate(math.log(config.median_call_s), config.call_sigma))
                calls.append(Call(t, duration, market.region))
    calls.sort(key=lambda c: c.arrive)
    return calls


def concurrency_by_second(calls: Sequence[Call], region: str) -> list[int]:
    """Calls of `region`'s demand in progress at each second of the day (warm-up included: index 0
    is the first second simulated)."""
    offset = int(min((c.arrive for c in calls), default=0.0))
    span = DAY_S - offset
    delta = [0] * (span + 1)
    for call in calls:
        if call.region == region:
            delta[int(call.arrive) - offset] += 1
            delta[min(span, int(call.arrive + call.duration) - offset)] -= 1
    return list(itertools.accumulate(delta))[:span]


@dataclass
class RegionView:
    """What a policy sees of one region at a sync."""

    region: str
    calls_active: int
    replicas: int
    ready: int
    spillover_in_calls: int


class Policy(Protocol):
    name: str

    def desired(self, view: RegionView, now: datetime) -> int:
        """The region's workers from now on."""
        ...

    def spillover_to(self, region: str) -> dict[str, int]:
        """Spillover demand the region publishes, by neighbour (after `desired`)."""
        ...


class DecisionPolicy:
    """`decision.decide` with a spec per region, keeping its history as the operator does."""

    def __init__(self, name: str, specs: dict[str, PoolSpec], *, counts_spillover: bool) -> None:
        self.name = name
        self.specs = specs
        self.counts_spillover = counts_spillover
        self._history = {region: History() for region in specs}
        self._room: dict[str, int] = {}
        self._out: dict[str, int] = {}

    def desired(self, view: RegionView, now: datetime) -> int:
        spec = self.specs[view.region]
        observation = Observation(
            calls_active=view.calls_active,
            current_workers=view.replicas,
            spillover_in_calls=view.spillover_in_calls if self.counts_spillover else 0,
        )
        decision = decide(observation, spec, self._history[view.region], now)
        self._history[view.region] = self._history[view.region].record(
            now.timestamp(), decision.recommendation, decision.workers, history_horizon(spec)
        )
        per_worker = spec.capacity.calls_per_worker
        self._room[view.region] = max(0, view.ready * per_worker - view.calls_active) + per_worker * max(
            0, spec.autoscaling.max_workers - view.replicas
        )
        self._out[view.region] = decision.spillover_out_calls if self.counts_spillover else 0
        return decision.workers

    def spillover_to(self, region: str) -> dict[str, int]:
        neighbours = self.specs[region].spillover.neighbours
        return spillover.allocate(self._out.get(region, 0), neighbours, self._room)


class OraclePolicy:
    """Perfect foresight: the peak of each region's own demand over the time a new worker needs
    to start plus one sync, packed perfectly; no buffer, no stabilization."""

    name = "oracle"

    def __init__(self, config: SimConfig, calls: Sequence[Call], min_workers: int) -> None:
        self._config = config
        self._min = min_workers
        self._offset = int(min((c.arrive for c in calls), default=0.0))
        self._demand = {m.region: concurrency_by_second(calls, m.region) for m in config.markets}

    def desired(self, view: RegionView, now: datetime) -> int:
        second = int((now - self._config.start).total_seconds()) - self._offset
        ahead = int(self._config.startup_s[1] + self._config.sync_s)
        window = self._demand[view.region][second : second + ahead + 1] or [0]
        return max(self._min, math.ceil(max(window) / self._config.calls_per_worker))

    def spillover_to(self, region: str) -> dict[str, int]:
        return {}


@dataclass
class SimWorker:
    pod: str
    ready_at: float
    calls: int = 0
    drain_started: float | None = None
    released: bool = False


@dataclass
class RegionState:
    market: Market
    replicas: int
    workers: dict[str, SimWorker] = field(default_factory=dict)
    # Ready, accepting workers by their calls, for O(capacity) packing (dicts: insertion-ordered,
    # so a run is reproducible whatever the hash seed).
    by_calls: list[dict[str, None]] = field(default_factory=list)
    spillover_in: int = 0


@dataclass
class RegionResult:
    region: str
    demand_calls: int = 0
    admitted_in_region: int = 0
    admitted_spilled: int = 0  # this region's calls served by a neighbour
    rejected: int = 0
    cut_calls: int = 0  # calls on a worker removed at its drain deadline
    worker_seconds: float = 0.0
    scale_events: int = 0
    flips: int = 0
    max_flips_in_an_hour: int = 0
    series_t: list[float] = field(default_factory=list)  # hours since start
    series_demand: list[int] = field(default_factory=list)  # concurrent calls of the region's demand
    series_capacity: list[int] = field(default_factory=list)  # ready workers x calls per worker

    @property
    def worker_hours(self) -> float:
        return self.worker_seconds / 3600


@dataclass
class SimResult:
    policy: str
    regions: dict[str, RegionResult]

    @property
    def admitted_in_region(self) -> float:
        return sum(r.admitted_in_region for r in self.regions.values()) / self._demand

    @property
    def admitted_with_spillover(self) -> float:
        return sum(r.admitted_in_region + r.admitted_spilled for r in self.regions.values()) / self._demand

    @property
    def worker_hours(self) -> float:
        return sum(r.worker_hours for r in self.regions.values())

    @property
    def _demand(self) -> int:
        return max(1, sum(r.demand_calls for r in self.regions.values()))


class Simulation:
    """One policy over one day of calls."""

    def __init__(self, config: SimConfig, calls: Sequence[Call], policy: Policy, min_workers: int) -> None:
        self.config = config
        self.calls = calls
        self.policy = policy
        self.rng = random.Random(config.seed + 1)  # noqa: S311 - a reproducible simulation
        self.regions = {m.region: RegionState(m, replicas=min_workers) for m in config.markets}
        self.results = {m.region: RegionResult(m.region) for m in config.markets}
        self._ended: list[tuple[float, str, str]] = []  # (end time, hosting region, pod)
        self._starting: list[tuple[float, str, str]] = []  # (ready time, region, pod)
        self._names = itertools.count()
        self._own_calls: dict[str, int] = {m.region: 0 for m in config.markets}
        self._own_ends: list[tuple[float, str]] = []
        self._last_direction: dict[str, int] = {m.region: 0 for m in config.markets}
        self._flip_times: dict[str, list[float]] = {m.region: [] for m in config.markets}
        for state in self.regions.values():
            state.by_calls = [{} for _ in range(config.calls_per_worker)]
            self._grow(state, -config.warmup_s, instantly=True)

    # --- workers ------------------------------------------------------------------------------

    def _grow(self, state: RegionState, now: float, *, instantly: bool = False) -> None:
        while len(state.workers) < state.replicas:
            pod = f"{state.market.region}-{next(self._names)}"
            ready_at = now if instantly else now + self.rng.uniform(*self.config.startup_s)
            state.workers[pod] = SimWorker(pod, ready_at)
            if instantly:
                state.by_calls[0][pod] = None
            else:
                heapq.heappush(self._starting, (ready_at, state.market.region, pod))

    def _accepting(self, worker: SimWorker, now: float) -> bool:
        return worker.ready_at <= now and worker.drain_started is None

    def _place(self, state: RegionState) -> SimWorker | None:
        for calls in range(self.config.calls_per_worker - 1, -1, -1):
            if state.by_calls[calls]:
                pod = next(iter(state.by_calls[calls]))
                state.by_calls[calls].pop(pod, None)
                worker = state.workers[pod]
                worker.calls += 1
                if worker.calls < self.config.calls_per_worker:
                    state.by_calls[worker.calls][pod] = None
                return worker
        return None

    def _end_call(self, region: str, pod: str, now: float) -> None:
        state = self.regions[region]
        worker = state.workers.get(pod)
        if worker is None:
            return  # removed at its drain deadline: the call was cut (counted as admitted already)
        if self._accepting(worker, now) and worker.calls < self.config.calls_per_worker:
            state.by_calls[worker.calls].pop(pod, None)
        worker.calls -= 1
        if self._accepting(worker, now):
            state.by_calls[worker.calls][pod] = None

    # --- the day --------------------------------------------------------------------------------

    def run(self) -> SimResult:
        next_sync = -self.config.warmup_s
        for call in [*self.calls, None]:
            until = DAY_S if call is None else call.arrive
            while True:
                due = [
                    (self._ended[0][0] if self._ended else math.inf, 0),
                    (self._starting[0][0] if self._starting else math.inf, 1),
                    (self._own_ends[0][0] if self._own_ends else math.inf, 2),
                    (next_sync, 3),
                ]
                at, kind = min(due)
                if at > until:
                    break
                if kind == 0:
                    _, region, pod = heapq.heappop(self._ended)
                    self._end_call(region, pod, at)
                elif kind == 1:
                    _, region, pod = heapq.heappop(self._starting)
                    state = self.regions[region]
                    if pod in state.workers and state.workers[pod].drain_started is None:
                        state.by_calls[state.workers[pod].calls][pod] = None
                elif kind == 2:
                    _, region = heapq.heappop(self._own_ends)
                    self._own_calls[region] -= 1
                else:
                    self._sync(at)
                    next_sync += self.config.sync_s
            if call is not None:
                self._arrive(call)
        return SimResult(self.policy.name, self.results)

    def _arrive(self, call: Call) -> None:
        result = self.results[call.region] if call.arrive >= 0 else RegionResult(call.region)
        result.demand_calls += 1
        self._own_calls[call.region] += 1
        heapq.heappush(self._own_ends, (call.arrive + call.duration, call.region))
        state = self.regions[call.region]
        for region in (call.region, *state.market.neighbours):
            worker = self._place(self.regions[region])
            if worker is not None:
                heapq.heappush(self._ended, (call.arrive + call.duration, region, worker.pod))
                if region == call.region:
                    result.admitted_in_region += 1
                else:
                    result.admitted_spilled += 1
                return
        result.rejected += 1

    def _sync(self, now: float) -> None:
        instant = self.config.start + timedelta(seconds=now)
        for region, state in self.regions.items():
            ready = [w for w in state.workers.values() if w.ready_at <= now]
            if now >= 0:
                result = self.results[region]
                result.worker_seconds += len(state.workers) * self.config.sync_s
                result.series_t.append(now / 3600)
                result.series_demand.append(self._own_calls[region])
                result.series_capacity.append(
                    sum(1 for w in ready if w.drain_started is None) * self.config.calls_per_worker
                )
            view = RegionView(
                region=region,
                calls_active=sum(w.calls for w in state.workers.values()),
                replicas=state.replicas,
                ready=len(ready),
                spillover_in_calls=state.spillover_in,
            )
            desired = self.policy.desired(view, instant)
            self._apply(state, desired, now)
        for region, state in self.regions.items():
            state.spillover_in = sum(
                self.policy.spillover_to(other).get(region, 0) for other in self.regions if other != region
            )

    def _apply(self, state: RegionState, desired: int, now: float) -> None:
        workers = [
            Worker(
                pod=w.pod,
                worker_id=w.pod,
                ready=w.ready_at <= now,
                calls_active=w.calls,
                reports_draining=w.drain_started is not None,
                drain_started_at=w.drain_started,
                released=w.released,
            )
            for w in state.workers.values()
        ]
        plan = plan_drain(workers, desired, state.replicas, now, self.config.max_drain_s)
        for victim in plan.start:
            worker = state.workers[victim.pod]
            if worker.calls < self.config.calls_per_worker:
                state.by_calls[worker.calls].pop(victim.pod, None)
            worker.drain_started = now
        for back in plan.resume:
            worker = state.workers[back.pod]
            worker.drain_started, worker.released = None, False
            if worker.ready_at <= now and worker.calls < self.config.calls_per_worker:
                state.by_calls[worker.calls][back.pod] = None
        for leaving in plan.release:  # the ReplicaSet removes exactly these (lowest deletion cost)
            worker = state.workers.pop(leaving.pod)
            if worker.calls < self.config.calls_per_worker:
                state.by_calls[worker.calls].pop(leaving.pod, None)
            if now >= 0:
                self.results[state.market.region].cut_calls += worker.calls
        self._record_scale(state.market.region, plan.replicas - state.replicas, now)
        state.replicas = plan.replicas
        self._grow(state, now)

    def _record_scale(self, region: str, change: int, now: float) -> None:
        if not change or now < 0:
            return
        result = self.results[region]
        result.scale_events += 1
        direction = 1 if change > 0 else -1
        if self._last_direction[region] and direction != self._last_direction[region]:
            result.flips += 1
            times = self._flip_times[region]
            times.append(now)
            in_hour = sum(1 for t in times if t > now - 3600)
            result.max_flips_in_an_hour = max(result.max_flips_in_an_hour, in_hour)
        self._last_direction[region] = direction


def simulate(
    config: SimConfig, policies: Sequence[Callable[[Sequence[Call]], Policy]], min_workers: int
) -> list[SimResult]:
    """Run every policy over the same day of calls."""
    calls = generate_calls(config)
    return [Simulation(config, calls, make(calls), min_workers).run() for make in policies]
