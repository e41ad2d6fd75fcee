"""Free and taken ports on loopback."""

from __future__ import annotations

import errno
import random
import socket

QUIET_PORTS = range(20000, 32768)
"""Below Linux's default ephemeral range (32768-60999): no outgoing connection is given one of these
between the moment a port is picked and the moment its server binds it."""


class PortTakenError(RuntimeError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(f"{what}: port {port} on {host} is already in use; pick another with the flag shown in --help")
        self.port = port


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody uses right now, outside the range the kernel hands outgoing connections."""
    while True:
        port = random.choice(QUIET_PORTS)  # noqa: S311 - spreading picks, not a secret
        try:
            ensure_free("free_port", host, port)
        except PortTakenError:
            continue
        return port


def ensure_free(what: str, host: str, port: int) -> None:
    """Raise `PortTakenError` naming `what` when `port` is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTakenError(what, host, port) from None
            raise
