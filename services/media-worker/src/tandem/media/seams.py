"""Every place the worker reaches past aiortc's public API, in one module.

aiortc keeps SDP, ICE and DTLS for a forwarded stream; the worker takes SRTP packets off the leg's
UDP sockets as they arrive, decrypts them with the leg's SRTP session and hands them to the
forwarding synchronously (no queue, no task per packet), and sends its own packets through the
leg's SRTP session and nominated socket the same way. RTCP, STUN and DTLS keep aiortc's path,
where the transport's RTCP handlers are shadowed too, so the worker sees feedback first and may
rewrite what aiortc's idle senders report.

Every hook is set on one object instance (never on aiortc's or aioice's classes), and relies on
names neither library promises to keep: aiortc is pinned to one minor series (``AIORTC_SERIES``)
and a contract test fails when an upgrade moves any of them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RtpPacket, is_rtcp

logger = logging.getLogger(__name__)

AIORTC_SERIES = "1.16."
"""The aiortc minor series these hooks were written against (pinned in the worker's pyproject)."""
AIOICE_SERIES = "0.13."
"""The aioice minor series whose connection and socket protocols the hooks read (pinned too)."""
_NTP_EPOCH_OFFSET_MS = 2208988800 * 1000
READ_BATCH = 64
"""Datagrams read per socket readiness event at most (bounds the time one leg holds the loop)."""
RECEIVE_SIZE = 65536

RtpHandler = Callable[["TransportHooks", bytes, int], bool]
"""Decrypted RTP: the transport it came on, the datagram, the arrival time (ms, aiortc's clock);
returns False for a packet aiortc is to receive (a stream it decodes)."""
RtcpHandler = Callable[["TransportHooks", bytes], Awaitable[None]]
"""Decrypted RTCP: the transport it came on, one compound datagram."""
Deliver = Callable[..., Awaitable[None]]


def arrival_ms() -> int:
    """Now on aiortc's receive clock (ms since the NTP epoch), as its bandwidth estimator expects."""
    return int(time.time() * 1000) + _NTP_EPOCH_OFFSET_MS


class TransportHooks:
    """One DTLS transport's decrypted traffic, routed to the worker first.

    ``deliver_rtp`` and ``deliver_rtcp`` hand a datagram on to aiortc as if never intercepted;
    ``send_now`` protects and sends one datagram at once; ``outgoing_rtcp`` sees (and may rewrite)
    every RTCP datagram aiortc's own senders and receivers send.
    """

    def __init__(
        self, dtls: RTCDtlsTransport, on_rtp: RtpHandler, on_rtcp: RtcpHandler, outgoing_rtcp: Callable[[bytes], bytes]
    ) -> None:
        self.dtls = dtls
        self._on_rtp = on_rtp
        self._deliver_rtp: Deliver = dtls._handle_rtp_data
        self._deliver_rtcp: Deliver = dtls._handle_rtcp_data
        self._send = dtls._send_rtp
        self._outgoing_rtcp = outgoing_rtcp
        self._sockets_taken = False
        self._deliveries: set[asyncio.Future[None]] = set()
        self._sockets: list[socket.socket] = []
        self.packets_in = 0
        self.packets_out = 0
        self.packets_failed = 0

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
            if not on_rtp(self, data, arrival_time_ms):
                await self.deliver_rtp(data, arrival_time_ms)

        async def handle_rtcp(data: bytes) -> None:
            await on_rtcp(self, data)

        # Instance attributes shadow the class's methods for this transport only.
        setattr(dtls, "_handle_rtp_data", handle_rtp)  # noqa: B010
        setattr(dtls, "_handle_rtcp_data", handle_rtcp)  # noqa: B010
        setattr(dtls, "_send_rtp", self._send_from_aiortc)  # noqa: B010
        dtls.on("statechange", self._take_sockets)

    def _take_sockets(self) -> None:
        """Once SRTP is keyed: SRTP datagrams go straight from the leg's sockets to the worker, and
        each readiness event drains the socket (asyncio alone reads one datagram per event)."""
        if self._sockets_taken or self.dtls.state != "connected" or self.dtls._rx_srtp is None:
            return
        self._sockets_taken = True
        for protocol in self.dtls.transport._connection._protocols:
            self._take(protocol)

    def _take(self, protocol: Any) -> None:
        rx = self.dtls._rx_srtp
        original: Callable[[bytes, Any], None] = protocol.datagram_received
        transport_socket = protocol.transport.get_extra_info("socket")
        # A second handle on the same (non-blocking) socket, to read what is already queued.
        sock = socket.fromfd(transport_socket.fileno(), transport_socket.family, transport_socket.type)
        self._sockets.append(sock)

        def one(data: bytes, addr: Any) -> None:
            if 128 <= data[0] < 192 and not is_rtcp(data):
                try:
                    plain = rx.unprotect(data)
                except pylibsrtp.Error:
                    return
                self.packets_in += 1
                arrival = arrival_ms()
                try:
                    consumed = self._on_rtp(self, plain, arrival)
                except Exception:  # one bad packet must not end the leg (asyncio closes a socket whose callback raises)
                    self.packets_failed += 1
                    logger.exception("forwarding a packet failed", extra={"failed": self.packets_failed})
                    return
                if not consumed:
                    self._deliver_later(plain, arrival)
            else:
                original(data, addr)  # STUN, DTLS and RTCP: aiortc's path

        def received(data: bytes, addr: Any) -> None:
            one(data, addr)
            for _ in range(READ_BATCH):
                try:
                    data, addr = sock.recvfrom(RECEIVE_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return  # closed under us: the transport reports it on its own read
                one(data, addr)

        setattr(protocol, "datagram_received", received)  # noqa: B010

    def close(self) -> None:
        """Release the second socket handles (the connection closes its own)."""
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _deliver_later(self, data: bytes, arrival: int) -> None:
        delivery = asyncio.ensure_future(self.deliver_rtp(data, arrival))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    def send_now(self, data: bytes) -> None:
        """Protect (SRTP or SRTCP by the packet type) and send one datagram on the nominated pair;
        dropped while the leg is not connected."""
        if self.dtls.state != "connected":
            return
        pair = self.dtls.transport._connection._nominated.get(1)
        if pair is None:
            return
        srtp = self.dtls._tx_srtp
        protected = srtp.protect_rtcp(data) if is_rtcp(data) else srtp.protect(data)
        pair.protocol.transport.sendto(protected, pair.remote_addr)
        self.packets_out += 1

    async def _send_from_aiortc(self, data: bytes) -> None:
        if is_rtcp(data):
            data = self._outgoing_rtcp(data)
        await self._send(data)

    async def deliver_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        await self._deliver_rtp(data, arrival_time_ms=arrival_time_ms)

    async def deliver_rtcp(self, data: bytes) -> None:
        await self._deliver_rtcp(data)

    def receiver_of(self, packet: RtpPacket) -> Any:
        """The aiortc receiver this packet belongs to (by SSRC, then payload type), or None."""
        return self.dtls._rtp_router.route_rtp(packet)

    @property
    def connected(self) -> bool:
        return self.dtls.state == "connected"


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRC a sender announced in the SDP, and its retransmission (RTX) SSRC."""
    return sender._ssrc, sender._rtx_ssrc


def leg_transports(receivers: list[RTCRtpReceiver]) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of a connection's receivers (one when bundled)."""
    seen: dict[int, RTCDtlsTransport] = {}
    for receiver in receivers:
        seen.setdefault(id(receiver.transport), receiver.transport)
    return list(seen.values())
