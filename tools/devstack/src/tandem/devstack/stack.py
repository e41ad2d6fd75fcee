"""The local stack: service processes under one supervisor with prefixed logs.

`make up` runs embedded nats-server and PostgreSQL under `.run/` plus every service; the
end-to-end tests use the same `Supervisor` with their own servers and settings. Ctrl-C (or
SIGTERM) stops everything and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import ensure_free
from tandem.devstack.postgres import PostgresServer

# A development-only signing key for the dev token endpoint; never used outside the local stack.
DEV_JWT_KEY = "tandem-dev-only-signing-key-change-me-in-any-real-deployment"
_COLOURS = ("36", "35", "33", "32", "34", "31")

LogSink = Callable[[str, str], None]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    env_prefix: str
    http_port: int
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


SIGNALING_DEV_ENV = {"TANDEM_SIGNALING_DEV_MODE": "true", "TANDEM_SIGNALING_JWT_KEY": DEV_JWT_KEY}


def standard_services(ports: list[int], database_url: str, **extra: dict[str, str]) -> list[ServiceSpec]:
    """Signaling (dev mode), matchmaking, a media worker and orders on these four ports.
    `extra` adds settings per service name."""
    signaling, matchmaking, media, orders = ports
    specs = [
        ServiceSpec("signaling", "tandem.signaling", "SIGNALING", signaling, SIGNALING_DEV_ENV),
        ServiceSpec("matchmaking", "tandem.matchmaking", "MATCHMAKING", matchmaking),
        ServiceSpec("media-worker", "tandem.media", "MEDIA", media),
        ServiceSpec("orders", "tandem.orders", "ORDERS", orders, {"TANDEM_ORDERS_DATABASE_URL": database_url}),
    ]
    return [
        ServiceSpec(s.name, s.module, s.env_prefix, s.http_port, {**s.extra_env, **extra.get(s.name, {})})
        for s in specs
    ]


def service_environment(
    prefix: str, nats_url: str, http_port: int, drain_timeout_s: float, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a service process: this one's, with the user's `TANDEM_<PREFIX>_*` settings
    for this service (other services' `TANDEM_*` dropped), then what the stack wires itself (NATS
    URL, HTTP port, drain timeout and `extra`), which wins."""
    p = f"TANDEM_{prefix}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_") or k.startswith(p)}
    env.update(
        {
            f"{p}NATS_URL": nats_url,
            f"{p}HTTP_PORT": str(http_port),
            f"{p}DRAIN_TIMEOUT_S": str(drain_timeout_s),
            **(extra or {}),
        }
    )
    return env


async def is_ready(http: aiohttp.ClientSession, url: str) -> bool:
    """Whether the service at `url` answers /readyz with 200."""
    try:
        async with http.get(f"{url}/readyz") as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def print_line(name: str, line: str) -> None:
    colour = _COLOURS[hash(name) % len(_COLOURS)]
    prefix = f"\033[{colour}m{name:>12} |\033[0m " if sys.stdout.isatty() else f"{name:>12} | "
    sys.stdout.write(prefix + line)
    sys.stdout.flush()


class Supervisor:
    """Starts service processes, relays their output line by line, and stops them all."""

    def __init__(
        self,
        specs: list[ServiceSpec],
        nats_url: str,
        *,
        drain_timeout_s: float = 10.0,
        log: LogSink = print_line,
    ) -> None:
        self.specs = specs
        self.nats_url = nats_url
        self.drain_timeout_s = drain_timeout_s
        self.log = log
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.exit_codes: dict[str, int] = {}
        self._pumps: list[asyncio.Task[None]] = []

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        return service_environment(
            spec.env_prefix, self.nats_url, spec.http_port, self.drain_timeout_s,
            {f"TANDEM_{spec.env_prefix}_INSTANCE_ID": spec.name, **spec.extra_env},
        )  # fmt: skip

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.log(name, line.decode(errors="replace"))

    async def start(self) -> None:
        for spec in self.specs:
            await self._start(spec)

    async def _start(self, spec: ServiceSpec) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", spec.module, env=self._env(spec),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        self.procs[spec.name] = proc
        self._pumps.append(asyncio.create_task(self._pump(spec.name, proc.stdout)))

    async def kill(self, name: str) -> None:
        """SIGKILL one service (a crash: no drain, no handover) and reap it."""
        proc = self.procs[name]
        proc.kill()
        await proc.wait()

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """SIGSTOP one service until the block ends (a stall: a long pause, a starved CPU)."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    async def restart(self, name: str, *, graceful: bool = True, timeout_s: float = 60.0) -> None:
        """Stop one service (SIGTERM and its drain, or at once when not `graceful`), start it again
        on the same port, and wait until it is ready."""
        proc = self.procs[name]
        if proc.returncode is None:
            if graceful:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), self.drain_timeout_s + 5)
            else:
                await self.kill(name)
        spec = next(s for s in self.specs if s.name == name)
        await self._start(spec)
        await self.wait_ready(timeout_s)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every service's /readyz answers 200; raises naming the ones that did not."""
        deadline = time.monotonic() + timeout_s
        pending = {s.name: s.url for s in self.specs}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while pending:
                for name, url in list(pending.items()):
                    if self.procs[name].returncode is not None:
                        raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
                    if await is_ready(http, url):
                        del pending[name]
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready within {timeout_s} s: {', '.join(pending)}")
                await asyncio.sleep(0.1)

    async def wait_any_exit(self) -> list[str]:
        """Until some service exits; returns the names of those that crashed."""
        exits = [asyncio.create_task(p.wait()) for p in self.procs.values()]
        try:
            await asyncio.wait(exits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in exits:
                task.cancel()
        return [name for name, p in self.procs.items() if p.returncode not in (None, 0)]

    async def stop(self) -> dict[str, int]:
        """SIGTERM everything, wait for the drain, kill stragglers; returns exit codes."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = await asyncio.wait_for(proc.wait(), self.drain_timeout_s + 5)
            except TimeoutError:
                self.log(name, "did not stop in time; killing it\n")
                proc.kill()
                codes[name] = await proc.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self.exit_codes = codes
        return codes


@contextlib.asynccontextmanager
async def supervised(
    specs: list[ServiceSpec], nats_url: str, log_path: Path, *, drain_timeout_s: float = 5.0
) -> AsyncIterator[Supervisor]:
    """Services running, ready, with their output in `log_path`; stopped on exit (exit codes in
    `supervisor.exit_codes`)."""
    with log_path.open("w") as log:

        def write(name: str, line: str) -> None:
            log.write(f"{name} | {line}")
            log.flush()

        supervisor = Supervisor(specs, nats_url, drain_timeout_s=drain_timeout_s, log=write)
        await supervisor.start()
        try:
            await supervisor.wait_ready(90)
            yield supervisor
        finally:
            await supervisor.stop()


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path
    host: str = "127.0.0.1"
    nats_port: int = 4222
    postgres_port: int = 5432
    http_base_port: int = 8080  # signaling (and /demo) here; the others on the next ports


async def run_stack(config: StackConfig) -> int:
    """`make up`: run until Ctrl-C / SIGTERM or a service crashes."""
    nats = NatsServer(config.run_dir / "nats", host=config.host, port=config.nats_port)
    postgres = PostgresServer(config.run_dir / "postgres", host=config.host, port=config.postgres_port)
    specs = standard_services([config.http_base_port + i for i in range(4)], postgres.url)
    ensure_free("nats-server (--nats-port)", config.host, config.nats_port)
    ensure_free("PostgreSQL (--postgres-port)", config.host, config.postgres_port)
    for spec in specs:
        ensure_free(f"{spec.name} (--http-base-port)", config.host, spec.http_port)
    nats.start()
    try:
        postgres.start()
        supervisor = Supervisor(specs, nats.url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.start()
        _print_summary(config, specs, nats, postgres)
        stopper = asyncio.create_task(stop.wait())
        crashed_task = asyncio.create_task(supervisor.wait_any_exit())
        await asyncio.wait([stopper, crashed_task], return_when=asyncio.FIRST_COMPLETED)
        crashed = crashed_task.result() if crashed_task.done() else []
        stopper.cancel()
        crashed_task.cancel()
        await supervisor.stop()
    finally:
        postgres.stop()
        nats.stop()
    print("all stopped", flush=True)
    if crashed:
        print(f"stopped because {', '.join(crashed)} exited", file=sys.stderr)
        return 1
    return 0


def _print_summary(config: StackConfig, specs: list[ServiceSpec], nats: NatsServer, pg: PostgresServer) -> None:
    host, signaling = config.host, specs[0]
    lines = [
        "",
        "Tandem is starting. Where everything listens:",
        f"  demo page      http://{host}:{signaling.http_port}/demo  (open twice: shopper and host)",
        f"  client socket  ws://{host}:{signaling.http_port}/v1/ws",
        f"  nats           {nats.url}",
        f"  postgres       {pg.url}",
        *(f"  {s.name:<14} http://{host}:{s.http_port}  (/healthz /readyz /metrics)" for s in specs),
        f"  data           {config.run_dir}",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
