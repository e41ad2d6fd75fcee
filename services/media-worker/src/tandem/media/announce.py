"""The address a worker announces: a pod behind its node's IP (1:1 NAT, a hostPort) answers with
that address in place of its own, so clients reach it without STUN, TURN or a gathering delay."""

from __future__ import annotations

import ipaddress

CANDIDATE = "a=candidate:"


def announce(sdp: str, address: str) -> str:
    """`sdp` (the worker's answer) with `address` in place of the host candidates of its family;
    host candidates of the other family are dropped (no one outside could reach them). Unchanged
    when `address` is empty."""
    if not address:
        return sdp
    version = ipaddress.ip_address(address).version
    lines = []
    for line in sdp.splitlines():
        if line.startswith(CANDIDATE):
            # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
            fields = line.split(" ")
            if len(fields) >= 8 and fields[7] == "host":
                if _version(fields[4]) != version:
                    continue
                fields[4] = address
                line = " ".join(fields)
        elif line.startswith("c=IN "):
            line = f"c=IN IP{version} {address}"
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None
