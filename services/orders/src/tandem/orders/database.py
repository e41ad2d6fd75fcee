"""The orders database: a pool that outlives a PostgreSQL restart, a readiness probe, and a lost
connection turned into a retryable error.

asyncpg's pool replaces a connection the server closed the next time it is acquired, so a restart
leaves no broken connection behind; what is in flight at that moment fails, and is answered
`DatabaseUnavailableError` (UNAVAILABLE, `retry_after_s`). A checkout is one transaction with its
idempotency key, so its retry places the order once: nothing was committed, or the committed answer
is replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
from prometheus_client import Gauge

from tandem.common.errors import TandemError
from tandem.orders.errors import DatabaseUnavailableError
from tandem.orders.settings import Settings

logger = logging.getLogger(__name__)

REACHABLE = Gauge("tandem_orders_database_reachable", "1 while the last database probe succeeded")

# What a server restart, failover or overload looks like from the client: refused or reset sockets,
# timeouts, "the database system is shutting down / starting up", a connection closed mid-query,
# a statement cancelled by its timeout, a transaction rolled back by a conflict, and asyncpg's
# "another operation is in progress" on a pooled connection whose termination by the server it has
# read but not yet processed (the pool replaces it when it is released).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TransactionRollbackError,
    asyncpg.InternalClientError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised while handling, one of `TRANSIENT_ERRORS`: asyncpg answers a
    rollback on a connection that just closed with `InterfaceError`, the loss being its context.
    A `TandemError` is already an answer, and a context suppressed (`from None`) is not followed."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, TandemError):
        if isinstance(seen, TRANSIENT_ERRORS):
            return True
        seen = seen.__cause__ if seen.__cause__ is not None or seen.__suppress_context__ else seen.__context__
    return False


A = TypeVar("A")
R = TypeVar("R")


class Database:
    """Create with `await Database.open(settings)`; `await close()` at the end."""

    def __init__(self, pool: asyncpg.Pool, *, retry_after_s: int, probe_interval_s: float, probe_timeout_s: float):
        self.pool = pool
        self.retry_after_s = retry_after_s
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.reachable = True
        self._lost = asyncio.Event()
        REACHABLE.set(1)

    @classmethod
    async def open(cls, settings: Settings) -> Database:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.db_pool_size,
            timeout=settings.db_connect_timeout_s,
            server_settings={"statement_timeout": str(settings.db_statement_timeout_ms)},
        )
        return cls(
            pool,
            retry_after_s=settings.db_retry_after_s,
            probe_interval_s=settings.db_probe_interval_s,
            probe_timeout_s=settings.db_connect_timeout_s,
        )

    def _set_reachable(self, reachable: bool) -> None:
        if reachable is not self.reachable:
            logger.warning("database reachability changed", extra={"reachable": reachable})
        self.reachable = reachable
        REACHABLE.set(int(reachable))

    @contextlib.asynccontextmanager
    async def unavailable_on_loss(self) -> AsyncIterator[None]:
        """Raise `DatabaseUnavailableError` instead of the driver's transient errors."""
        try:
            yield
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._set_reachable(False)
            self._lost.set()  # probe now: readiness follows at once, and recovers as soon as it can
            raise DatabaseUnavailableError(type(exc).__name__, retry_after_s=self.retry_after_s) from exc

    def guarded(self, handler: Callable[[A], Awaitable[R]]) -> Callable[[A], Awaitable[R]]:
        """`handler` with the driver's transient errors raised as `DatabaseUnavailableError`."""

        async def run(arg: A) -> R:
            async with self.unavailable_on_loss():
                return await handler(arg)

        return run

    async def probe(self) -> bool:
        """Whether a `SELECT 1` through the pool answers within `probe_timeout_s`."""
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                await self.pool.fetchval("SELECT 1")
        except Exception as exc:
            if not is_transient(exc):
                raise
            return False
        return True

    async def watch(self) -> None:
        """Probe every `probe_interval_s` (at once after a request saw the database lost)."""
        while True:
            self._set_reachable(await self.probe())
            self._lost.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.probe_interval_s)

    async def close(self) -> None:
        await self.pool.close()
