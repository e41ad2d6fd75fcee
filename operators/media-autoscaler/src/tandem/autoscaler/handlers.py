"""The kopf handlers: thin adapters from kopf's causes to `PoolScaler`.

The Deployment is created and updated by spec handlers; scaling is a level-based daemon per pool
that re-reads the world every sync interval, so a restart resumes where the last run left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from kubernetes_asyncio.client.rest import ApiException

from tandem.autoscaler.reconcile import PoolRef, PoolScaler
from tandem.autoscaler.spec import GROUP, PLURAL, VERSION, InvalidSpecError, parse_spec
from tandem.common.aio import cancel_and_wait
from tandem.common.errors import TandemError

logger = logging.getLogger(__name__)

# After a failed sync (API or NATS trouble), seconds before the next try.
RETRY_DELAY_S = 5.0


def _pool(name: str | None, namespace: str | None, meta: kopf.Meta) -> PoolRef:
    return PoolRef(
        namespace=namespace or "default",
        name=name or "",
        uid=meta.uid or "",
        generation=int(meta.get("generation", 0)),
    )


async def _sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the next sync is due, the spec changed, or the daemon is stopped."""

    async def until_stopped() -> None:
        # kopf's wait may surface its internal timeout instead of returning: either way, time is up.
        with contextlib.suppress(TimeoutError):
            await stopped.wait(seconds)

    waits = {asyncio.create_task(until_stopped()), asyncio.create_task(wake.wait())}
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    await cancel_and_wait(*pending)
    wake.clear()


def build_registry(
    scaler: PoolScaler, *, kube_api_url: str, retry_delay_s: float = RETRY_DELAY_S
) -> kopf.OperatorRegistry:
    """Handlers bound to `scaler`; `kube_api_url` empty means the in-cluster service account."""
    registry = kopf.OperatorRegistry()
    # One event per pool: set when its spec changes, so the daemon syncs now, not at its next tick.
    wakeups: dict[tuple[str, str], asyncio.Event] = {}

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress in annotations: the pool's status schema is ours alone.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autoscaler.tandem.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="autoscaler.tandem.dev")
        settings.persistence.finalizer = "autoscaler.tandem.dev/finalizer"
        # One namespace, least privilege: no listing of namespaces or CRDs cluster-wide.
        settings.scanning.disabled = True

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if kube_api_url:
            return kopf.ConnectionInfo(server=kube_api_url, default_namespace="default")
        return kopf.login_with_service_account(**kwargs)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    async def deploy(
        name: str | None,
        namespace: str | None,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        **_: Any,
    ) -> None:
        pool = _pool(name, namespace, meta)
        wakeups.setdefault((pool.namespace, pool.name), asyncio.Event()).set()
        try:
            parsed = parse_spec(spec)
        except InvalidSpecError as exc:
            await scaler.report_invalid(pool, exc, status)
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        await scaler.ensure_deployment(pool, parsed)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=5.0, backoff=retry_delay_s)
    async def scale(
        stopped: kopf.DaemonStopped,
        name: str | None,
        namespace: str | None,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        **_: Any,
    ) -> None:
        pool = _pool(name, namespace, meta)
        key = (pool.namespace, pool.name)
        wake = wakeups.setdefault(key, asyncio.Event())
        while not stopped:
            pool = _pool(name, namespace, meta)  # the generation moves with spec edits
            try:
                interval = await scaler.sync(pool, spec, status)
            except (ApiException, TandemError, OSError) as exc:
                logger.warning("pool sync failed", extra={"pool": pool.name, "error": repr(exc)})
                interval = retry_delay_s
            await _sleep(stopped, wake, interval)
        wakeups.pop(key, None)
        scaler.forget(pool)

    return registry
