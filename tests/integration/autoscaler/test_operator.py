"""The operator running against kmock's Kubernetes emulator and a real nats-server, with fake
media workers that report load and obey drains, and a tiny ReplicaSet controller that removes the
pods with the lowest deletion cost first, as Kubernetes does."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kmock
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tandem.autoscaler.app import run_operator
from tandem.autoscaler.deployment import deployment_name, pod_labels
from tandem.autoscaler.drain import DELETION_COST_ANNOTATION
from tandem.autoscaler.settings import Settings
from tandem.common import subjects
from tandem.common.bus import Bus, BusConfig
from tandem.devstack.ports import free_port
from tandem.v1.media_pb2 import RegionCapacity, WorkerDrain, WorkerLoadReport

NAMESPACE = "tandem-test"
POOLS = "tandem.dev/v1/mediaworkerpools"
DEPLOYMENTS = "apps/v1/deployments"
PODS = "v1/pods"
REPORT_INTERVAL_S = 0.05


pytestmark = pytest.mark.integration


def pool_spec(**autoscaling: Any) -> dict[str, Any]:
    """A pool whose timers are fractions of a second, so tests never wait long."""
    scaling: dict[str, Any] = {
        "minWorkers": 1,
        "maxWorkers": 10,
        "syncIntervalSeconds": 0.1,
        "buffer": {"calls": 2},
        "behavior": {
            "tolerance": 0,
            "scaleUp": {"stabilizationWindowSeconds": 0},
            "scaleDown": {"stabilizationWindowSeconds": 1},
        },
        "fallback": {"afterSeconds": 1},
    }
    scaling.update(autoscaling)
    return {
        "region": "eu",
        "image": "tandem/media-worker:test",
        "capacity": {"callsPerWorker": 4},
        "autoscaling": scaling,
        "drain": {"maxDrainSeconds": 600},
        "spillover": {"neighbours": ["us"]},
    }


@dataclass
class FakeWorker:
    pod: str
    calls: int = 0
    draining: bool = False


@dataclass
class FakeCluster:
    """Fake workers and a fake ReplicaSet controller for one pool."""

    k8s: kmock.KubernetesEmulator
    bus: Bus
    http: aiohttp.ClientSession
    pool: str
    workers: dict[str, FakeWorker] = field(default_factory=dict)
    drains: list[WorkerDrain] = field(default_factory=list)
    removed: list[FakeWorker] = field(default_factory=list)
    # Calls spread over the workers on every tick (None: tests set each worker's calls).
    spread: int | None = None
    # False: every worker, new ones too, stops publishing load reports (a NATS partition).
    reporting: bool = True
    _names: Iterator[int] = field(default_factory=itertools.count)

    async def create_pool(self, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "tandem.dev/v1",
            "kind": "MediaWorkerPool",
            "metadata": {
                "name": self.pool,
                "namespace": NAMESPACE,
                "uid": "uid-1",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": spec,
        }
        url = f"/apis/tandem.dev/v1/namespaces/{NAMESPACE}/mediaworkerpools"
        async with self.http.post(url, json=body) as response:
            assert response.status < 300, await response.text()

    async def patch_pool(self, patch: dict[str, Any]) -> None:
        url = f"/apis/tandem.dev/v1/namespaces/{NAMESPACE}/mediaworkerpools/{self.pool}"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.http.patch(url, json=patch, headers=headers) as response:
            assert response.status < 300, await response.text()

    def pool_object(self) -> dict[str, Any]:
        return dict(self.k8s.objects[POOLS, NAMESPACE, self.pool])

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.pool_object().get("status", {}))

    def deployment(self) -> dict[str, Any] | None:
        try:
            deployment = self.k8s.objects[DEPLOYMENTS, NAMESPACE, deployment_name(self.pool)]
        except KeyError:
            return None
        return None if deployment.deleted else dict(deployment)

    def replicas(self) -> int | None:
        deployment = self.deployment()
        return None if deployment is None else int(deployment["spec"]["replicas"])

    def annotations(self, pod: str) -> dict[str, str]:
        return dict(self.k8s.objects[PODS, NAMESPACE, pod].get("metadata", {}).get("annotations") or {})

    def syncs(self) -> int:
        """The operator's syncs so far: each writes the pool's status once."""
        return sum(1 for r in list(self.k8s) if r.method.value == "PATCH" and r.url.path.endswith("/status"))

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status.get("conditions", []) if c["type"] == kind)

    def _reconcile_pods(self) -> None:
        replicas = self.replicas()
        if replicas is None:
            return
        while len(self.workers) < replicas:
            name = f"{self.pool}-{next(self._names)}"
            self.k8s.objects[PODS, NAMESPACE, name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": pod_labels(self.pool)},
                "spec": {"containers": [{"name": "media-worker", "image": "tandem/media-worker:test"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
            self.workers[name] = FakeWorker(name)
        while len(self.workers) > replicas:
            # Kubernetes' ReplicaSet: the lowest pod-deletion-cost goes first (default 0).
            victim = min(self.workers, key=lambda pod: int(self.annotations(pod).get(DELETION_COST_ANNOTATION, "0")))
            self.removed.append(self.workers.pop(victim))
            del self.k8s.objects[PODS, NAMESPACE, victim]

    async def _report(self) -> None:
        if not self.reporting:
            return
        for worker in list(self.workers.values()):
            reported_at = Timestamp()
            reported_at.GetCurrentTime()
            report = WorkerLoadReport(
                worker_id=worker.pod,
                region="eu",
                pool=self.pool,
                calls_active=worker.calls,
                capacity=4,
                accepting=not worker.draining,
                draining=worker.draining,
                reported_at=reported_at,
                pod=worker.pod,
            )
            await self.bus.publish(subjects.join(subjects.MEDIA_LOAD, "eu", worker.pod), report)

    async def run(self) -> None:
        async def on_drain(message: WorkerDrain, _subject: str) -> None:
            self.drains.append(message)
            if message.worker_id in self.workers:
                self.workers[message.worker_id].draining = message.drain

        await self.bus.subscribe(f"{subjects.MEDIA_WORKER}.*.drain", WorkerDrain, on_drain)
        while True:
            self._reconcile_pods()
            if self.spread is not None:
                self._spread(self.spread)
            await self._report()
            await asyncio.sleep(REPORT_INTERVAL_S)

    def set_calls(self, total: int | None) -> None:
        """Keep `total` calls spread over the workers that take calls, filling the first ones up to
        their capacity (None: leave each worker's calls as they are)."""
        self.spread = total
        if total is not None:
            self._spread(total)

    def _spread(self, total: int) -> None:
        for worker in self.workers.values():
            worker.calls = 0 if worker.draining else min(4, total)
            total -= worker.calls


@dataclass
class OperatorHandle:
    """The operator in a thread of its own, as kopf's own test runner does: kopf cancels every
    task of its event loop on exit, which must not include the test's."""

    settings: Settings
    thread: threading.Thread | None = None
    stop_flag: threading.Event = field(default_factory=threading.Event)

    async def start(self) -> None:
        self.stop_flag = threading.Event()
        ready = threading.Event()

        def run() -> None:
            asyncio.run(run_operator(self.settings, stop_flag=self.stop_flag, ready_flag=ready))

        self.thread = threading.Thread(target=run, name="operator", daemon=True)
        self.thread.start()
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"

    async def stop(self) -> None:
        self.stop_flag.set()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 10)
            assert not self.thread.is_alive(), "the operator did not stop"
            self.thread = None


@pytest.fixture
async def operator(k8s: kmock.KubernetesEmulator, nats_url: str) -> AsyncIterator[OperatorHandle]:
    settings = Settings(
        namespace=NAMESPACE,
        kube_api_url=str(k8s.url).rstrip("/"),
        nats_url=nats_url,
        liveness_port=0,
        http_port=free_port(),
    )
    handle = OperatorHandle(settings)
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def cluster(k8s: kmock.KubernetesEmulator, nats_url: str, operator: OperatorHandle) -> AsyncIterator[FakeCluster]:
    bus = Bus(BusConfig(servers=[nats_url], name="fake-workers"))
    await bus.connect()
    async with aiohttp.ClientSession(base_url=str(k8s.url)) as http:
        fake = FakeCluster(k8s=k8s, bus=bus, http=http, pool="eu-pool")
        task = asyncio.create_task(fake.run())
        try:
            yield fake
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await bus.close()


async def eventually(check: Any, timeout_s: float = 5.0, interval_s: float = 0.05) -> None:
    """Wait until `check()` is truthy (raising its last AssertionError on timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            if check():
                return
        except (AssertionError, KeyError, StopIteration, TypeError):
            if loop.time() > deadline:
                raise
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


def total_calls(cluster: FakeCluster) -> int:
    return sum(w.calls for w in cluster.workers.values())


async def started(cluster: FakeCluster, spec: dict[str, Any], workers: int = 1) -> None:
    """Create the pool and wait until its first workers report."""
    await cluster.create_pool(spec)
    await eventually(lambda: len(cluster.workers) == workers and cluster.status.get("ready") == workers)


async def test_creating_a_pool_creates_its_deployment_with_owner_reference(cluster: FakeCluster) -> None:
    await cluster.create_pool(pool_spec())
    await eventually(lambda: cluster.deployment() is not None)
    deployment = cluster.deployment()
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    assert worker["image"] == "tandem/media-worker:test"
    env = {var["name"]: var["value"] for var in worker["env"]}
    spec = pool_spec()
    assert env["TANDEM_MEDIA_CAPACITY"] == str(spec["capacity"]["callsPerWorker"])
    assert env["TANDEM_MEDIA_DRAIN_TIMEOUT_S"] == str(spec.get("drain", {}).get("maxDrainSeconds", 1800))
    owner = deployment["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "tandem.dev/v1",
        "kind": "MediaWorkerPool",
        "name": "eu-pool",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def test_the_operator_reports_ready_and_serves_metrics(operator: OperatorHandle) -> None:
    url = f"http://127.0.0.1:{operator.settings.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as ready:
            assert ready.status == 200, await ready.text()
        async with http.get(f"{url}/metrics") as metrics:
            assert metrics.status == 200
            assert "python_info" in await metrics.text()


async def test_rising_load_raises_replicas_within_a_sync_interval(cluster: FakeCluster) -> None:
    await started(cluster, pool_spec(syncIntervalSeconds=0.3))
    syncs_before = cluster.syncs()
    cluster.set_calls(4)  # the one worker is full: 4 calls + 2 buffer need 2 workers

    await eventually(lambda: cluster.replicas() == 2)
    # The sync that first sees a report with the load scales (one more when the report lands
    # just after a sync read the book): never a later one.
    assert cluster.syncs() - syncs_before <= 2


async def test_falling_load_scales_down_after_the_window_idle_workers_first(cluster: FakeCluster) -> None:
    spec = pool_spec()
    spec["autoscaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 2
    await started(cluster, spec)
    cluster.set_calls(4)
    await eventually(lambda: cluster.replicas() == 2)
    cluster.set_calls(12)  # 12 + 2 buffer: 4 workers
    await eventually(lambda: cluster.replicas() == 4 and len(cluster.workers) == 4)
    await eventually(lambda: cluster.status.get("ready") == 4)
    busy = next(iter(cluster.workers))
    cluster.set_calls(3)  # all on the first worker: 3 + 2 buffer fit in 2 workers

    await eventually(lambda: cluster.status["desired"]["reason"] == "StabilizationWindow")
    assert cluster.replicas() == 4
    await eventually(lambda: cluster.replicas() == 2, timeout_s=8)
    await eventually(lambda: len(cluster.workers) == 2)
    assert busy in cluster.workers
    assert [w.calls for w in cluster.removed] == [0, 0]
    assert all(w.draining for w in cluster.removed)
    assert total_calls(cluster) == 3


async def test_a_busy_worker_is_never_removed_before_its_drain_time(cluster: FakeCluster) -> None:
    await started(cluster, pool_spec())
    cluster.set_calls(8)
    await eventually(lambda: cluster.replicas() == 3 and cluster.status.get("ready") == 3)
    cluster.set_calls(None)
    for worker in cluster.workers.values():
        worker.calls = 1  # 3 calls + 2 buffer: 2 workers would do, but every worker is busy

    await eventually(lambda: cluster.status.get("draining") == 1, timeout_s=8)
    draining = next(w for w in cluster.workers.values() if w.draining)
    for _ in range(3):  # several scale-down windows pass
        await asyncio.sleep(1.0)
        assert cluster.replicas() == 3
        assert draining.pod in cluster.workers
    assert cluster.removed == []

    draining.calls = 0  # its call ends: now it may go
    await eventually(lambda: cluster.replicas() == 2 and draining.pod not in cluster.workers)
    assert [w.pod for w in cluster.removed] == [draining.pod]


async def test_editing_the_spec_reconciles_the_deployment_and_replicas(cluster: FakeCluster) -> None:
    await started(cluster, pool_spec())
    spec = pool_spec(minWorkers=3)
    spec["image"] = "tandem/media-worker:v2"
    await cluster.patch_pool({"metadata": {"generation": 2}, "spec": spec})

    await eventually(lambda: cluster.replicas() == 3)
    deployment = cluster.deployment()
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "tandem/media-worker:v2"
    await eventually(lambda: cluster.status.get("observedGeneration") == 2)
    assert cluster.status["desired"]["reason"] == "MinWorkers"


async def test_status_and_conditions_are_written(cluster: FakeCluster) -> None:
    await started(cluster, pool_spec(maxWorkers=2))
    cluster.set_calls(4)
    await eventually(lambda: len(cluster.workers) == 2)
    cluster.set_calls(8)  # 8 + 2 buffer want 3 workers; max is 2

    await eventually(lambda: cluster.condition("ScalingLimited")["status"] == "True")
    status = cluster.status
    assert status["workers"] == 2
    assert status["ready"] == 2
    assert status["busy"] == 2
    assert status["calls"] == {"active": 8, "capacity": 8}
    assert status["desired"]["workers"] == 2
    assert status["desired"]["reason"] == "MaxWorkers"
    assert status["spillover"]["outCalls"] == 2
    assert status["selector"] == "tandem.dev/pool=eu-pool,app.kubernetes.io/component=media-worker"
    assert status["observedGeneration"] == 1
    assert status["lastScaleTime"]
    assert cluster.condition("ScalingLimited")["reason"] == "MaxWorkers"
    assert cluster.condition("Ready")["status"] == "True"
    assert cluster.condition("MetricsStale")["status"] == "False"


async def test_restarting_the_operator_repeats_no_action(cluster: FakeCluster, operator: OperatorHandle) -> None:
    await started(cluster, pool_spec())
    cluster.set_calls(8)
    await eventually(lambda: cluster.replicas() == 3 and cluster.status.get("ready") == 3)
    cluster.set_calls(None)
    for worker in cluster.workers.values():
        worker.calls = 1
    await eventually(lambda: cluster.status.get("draining") == 1, timeout_s=8)
    draining = next(w for w in cluster.workers.values() if w.draining)
    started_at = cluster.annotations(draining.pod)["tandem.dev/drain-started-at"]

    await operator.stop()
    requests_before = len(list(cluster.k8s))
    drains_before = len(cluster.drains)
    await operator.start()

    syncs_before = cluster.syncs()
    await eventually(lambda: cluster.syncs() >= syncs_before + 5)

    after = list(cluster.k8s)[requests_before:]
    writes = [(r.method.value, r.url.path) for r in after if r.method.value != "GET"]
    assert not [w for w in writes if "/deployments" in w[1] or "/pods" in w[1]], writes
    assert len(cluster.drains) == drains_before  # no drain asked twice
    assert cluster.annotations(draining.pod)["tandem.dev/drain-started-at"] == started_at
    assert cluster.replicas() == 3


async def test_an_invalid_spec_gets_a_condition_not_a_crash_loop(cluster: FakeCluster) -> None:
    await cluster.create_pool(pool_spec(minWorkers=5, maxWorkers=2))

    await eventually(lambda: cluster.condition("Ready")["reason"] == "InvalidSpec")
    assert "minWorkers must not exceed maxWorkers" in cluster.condition("Ready")["message"]
    assert cluster.condition("Ready")["status"] == "False"
    assert cluster.deployment() is None

    await cluster.patch_pool({"metadata": {"generation": 2}, "spec": pool_spec(minWorkers=2, maxWorkers=2)})
    await eventually(lambda: cluster.replicas() == 2)
    await eventually(lambda: cluster.condition("Ready")["reason"] == "WorkersReady")


async def test_stale_load_reports_trigger_the_fallback_and_metrics_stale(cluster: FakeCluster) -> None:
    spec = pool_spec()
    spec["autoscaling"]["fallback"] = {"afterSeconds": 1, "minWorkers": 3}
    await started(cluster, spec)  # the fallback may already have held workers before the first reports
    cluster.set_calls(4)
    await eventually(lambda: cluster.replicas() == 2 and len(cluster.workers) == 2)
    await eventually(lambda: cluster.condition("MetricsStale")["status"] == "False")
    cluster.removed.clear()
    cluster.reporting = False

    await eventually(lambda: cluster.condition("MetricsStale")["status"] == "True")
    await eventually(lambda: cluster.replicas() == 3)
    assert cluster.status["desired"]["reason"] == "MetricsStale"
    assert cluster.removed == []


async def test_spillover_is_published_at_max_and_neighbours_demand_is_counted(cluster: FakeCluster) -> None:
    published: list[RegionCapacity] = []

    async def on_capacity(message: RegionCapacity, _subject: str) -> None:
        published.append(message)

    await cluster.bus.subscribe(subjects.join(subjects.CAPACITY, "eu"), RegionCapacity, on_capacity)
    await started(cluster, pool_spec(maxWorkers=2))
    cluster.set_calls(4)
    await eventually(lambda: len(cluster.workers) == 2)
    cluster.set_calls(8)  # 8 + 2 buffer: 2 calls more than 2 workers hold, offered to "us"

    await eventually(lambda: published[-1].spillover_to.get("us") == 2)
    assert published[-1].spillover_demand_calls == 2
    assert (published[-1].capacity_calls, published[-1].headroom_calls) == (8, 0)
    assert list(published[-1].neighbours) == ["us"]

    # The other way round: "us" asks "eu" to take 8 calls; eu counts them in its desired capacity.
    await cluster.patch_pool({"metadata": {"generation": 2}, "spec": pool_spec(maxWorkers=10)})
    cluster.set_calls(0)
    await eventually(lambda: cluster.status.get("spillover", {}).get("outCalls") == 0)
    demand = RegionCapacity(region="us", pool="us-pool", spillover_demand_calls=8, spillover_to={"eu": 8})
    for _ in range(3):
        await cluster.bus.publish(subjects.join(subjects.CAPACITY, "us"), demand)
    await eventually(lambda: cluster.status["spillover"]["inCalls"] == 8)
    await eventually(lambda: cluster.replicas() == 3)  # 8 calls + 2 buffer: 3 workers of 4
