"""`make up`: embedded nats-server and PostgreSQL under `.run/`, then every service under one
supervisor with prefixed logs. Ctrl-C (or SIGTERM) stops everything; nothing is left running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import ensure_free
from tandem.devstack.postgres import PostgresServer

# A development-only signing key for the dev token endpoint; never used outside `make up`.
DEV_JWT_KEY = "tandem-dev-only-signing-key-change-me-in-any-real-deployment"
_COLOURS = ("36", "35", "33", "32", "34", "31")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    env_prefix: str
    http_port: int
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path
    host: str = "127.0.0.1"
    nats_port: int = 4222
    postgres_port: int = 5432
    http_base_port: int = 8080  # signaling (and /demo) here; the others on the next ports
    drain_timeout_s: float = 10.0


def services(config: StackConfig, nats_url: str, database_url: str) -> list[ServiceSpec]:
    port = config.http_base_port
    return [
        ServiceSpec(
            "signaling",
            "tandem.signaling",
            "SIGNALING",
            port,
            {"TANDEM_SIGNALING_DEV_MODE": "true", "TANDEM_SIGNALING_JWT_KEY": DEV_JWT_KEY},
        ),
        ServiceSpec("matchmaking", "tandem.matchmaking", "MATCHMAKING", port + 1),
        ServiceSpec("media-worker", "tandem.media", "MEDIA", port + 2),
        ServiceSpec(
            "orders", "tandem.orders", "ORDERS", port + 3, {"TANDEM_ORDERS_DATABASE_URL": database_url}
        ),
    ]


def service_env(spec: ServiceSpec, config: StackConfig, nats_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    p = f"TANDEM_{spec.env_prefix}_"
    env.update(
        {
            f"{p}NATS_URL": nats_url,
            f"{p}HTTP_HOST": config.host,
            f"{p}HTTP_PORT": str(spec.http_port),
            f"{p}DRAIN_TIMEOUT_S": str(config.drain_timeout_s),
            f"{p}INSTANCE_ID": f"{spec.name}-local",
            **spec.extra_env,
        }
    )
    return env


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.nats = NatsServer(config.run_dir / "nats", host=config.host, port=config.nats_port)
        self.postgres = PostgresServer(
            config.run_dir / "postgres", host=config.host, port=config.postgres_port
        )
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._pumps: list[asyncio.Task[None]] = []

    def check_ports(self) -> list[ServiceSpec]:
        """Refuse to start when a port is taken, naming the flag that moves it."""
        ensure_free("nats-server (--nats-port)", self.config.host, self.config.nats_port)
        ensure_free("PostgreSQL (--postgres-port)", self.config.host, self.config.postgres_port)
        specs = services(self.config, self.nats.url, self.postgres.url)
        for spec in specs:
            ensure_free(f"{spec.name} (--http-base-port)", self.config.host, spec.http_port)
        return specs

    async def _pump(self, name: str, colour: str, stream: asyncio.StreamReader) -> None:
        prefix = f"\033[{colour}m{name:>12} |\033[0m " if sys.stdout.isatty() else f"{name:>12} | "
        while line := await stream.readline():
            sys.stdout.write(prefix + line.decode(errors="replace"))
            sys.stdout.flush()

    async def run(self) -> int:
        specs = self.check_ports()
        self.nats.start()
        self.postgres.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            for spec, colour in zip(specs, _COLOURS, strict=False):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", spec.module,
                    env=service_env(spec, self.config, self.nats.url),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                assert proc.stdout is not None
                self._procs[spec.name] = proc
                self._pumps.append(asyncio.create_task(self._pump(spec.name, colour, proc.stdout)))
            self._print_summary(specs)
            exited = [asyncio.create_task(p.wait()) for p in self._procs.values()]
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *exited], return_when=asyncio.FIRST_COMPLETED)
            crashed = [name for name, p in self._procs.items() if p.returncode not in (None, 0)]
            waiter.cancel()
            for task in exited:
                task.cancel()
        finally:
            await self.stop()
        if crashed:
            print(f"stopped because {', '.join(crashed)} exited", file=sys.stderr)
            return 1
        return 0

    def _print_summary(self, specs: list[ServiceSpec]) -> None:
        host = self.config.host
        lines = [
            "",
            "Tandem is starting. Where everything listens:",
            f"  demo page      http://{host}:{specs[0].http_port}/demo",
            f"  client socket  ws://{host}:{specs[0].http_port}/v1/ws",
            f"  nats           {self.nats.url}",
            f"  postgres       {self.postgres.url}",
            *(f"  {s.name:<14} http://{host}:{s.http_port}  (/healthz /readyz /metrics)" for s in specs),
            f"  data           {self.config.run_dir}",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    async def stop(self) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self._procs.items():
            try:
                await asyncio.wait_for(proc.wait(), self.config.drain_timeout_s + 2)
            except TimeoutError:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                proc.kill()
                await proc.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self.postgres.stop()
        self.nats.stop()
        print("all stopped", flush=True)
