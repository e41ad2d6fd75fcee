"""Free and taken ports on loopback."""

from __future__ import annotations

import errno
import socket


class PortTakenError(RuntimeError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(f"{what}: port {port} on {host} is already in use; pick another with the flag shown in --help")
        self.port = port


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
