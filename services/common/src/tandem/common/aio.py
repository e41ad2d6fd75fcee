"""Small asyncio utilities: a task set that keeps strong references, and cancel-and-wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any], timeout_s: float = 10.0) -> None:
    """Cancel tasks and wait until they have finished, swallowing their cancellation.

    Cancels again while a task is still running: before Python 3.12 `asyncio.wait_for` (used inside
    libraries such as nats-py) can swallow a cancellation that races with its own completion.
    Gives up after `timeout_s`, logging the tasks left running."""
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            logger.error("tasks ignored cancellation", extra={"tasks": [t.get_name() for t in pending]})
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, remaining))
    await asyncio.gather(*tasks, return_exceptions=True)


class TaskSet:
    """Owns background tasks so none is garbage-collected mid-flight or forgotten at shutdown.

    A task that fails is logged, never silently lost.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background task failed", exc_info=exc, extra={"taskset": self._name, "task": task.get_name()})

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout_s: float) -> bool:
        """Wait for running tasks to finish by themselves; False when some are still running."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return not pending

    async def cancel_all(self) -> None:
        await cancel_and_wait(*self._tasks)


class LoopLagMonitor:
    """Measures how late the event loop runs a timer: the cost of CPU work blocking the loop."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._max_s = 0.0
        self.observers: list[Callable[[float], None]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - start - self.interval_s)
            self._max_s = max(self._max_s, lag)
            for observe in self.observers:
                observe(lag)

    def take_max_ms(self) -> float:
        """The worst lag since the previous call, in milliseconds."""
        worst, self._max_s = self._max_s, 0.0
        return worst * 1000.0
