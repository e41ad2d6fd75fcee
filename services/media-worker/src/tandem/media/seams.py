"""Every place the worker reaches past aiortc's public API, in one module.

aiortc keeps ICE, DTLS and SRTP for a forwarded stream; the worker takes the decrypted packets
before aiortc's receivers see them and sends its own packets through the transport's SRTP. These
hooks are set on one transport instance (never on aiortc's classes), and they rely on names that
aiortc does not promise to keep: aiortc is pinned to one minor series (``AIORTC_SERIES``) and a
contract test fails when an upgrade moves any of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RtpPacket, is_rtcp

AIORTC_SERIES = "1.16."
"""The aiortc minor series these hooks were written against (pinned in the worker's pyproject)."""

RtpHandler = Callable[["TransportHooks", bytes, int], Awaitable[None]]
"""Decrypted RTP: the transport it came on, the datagram, the arrival time in ms."""
RtcpHandler = Callable[["TransportHooks", bytes], Awaitable[None]]
"""Decrypted RTCP: the transport it came on, one compound datagram."""
Deliver = Callable[..., Awaitable[None]]
Send = Callable[[bytes], Awaitable[None]]
"""Protect (SRTP or SRTCP, chosen by the packet type) and send one datagram."""


class TransportHooks:
    """One DTLS transport's decrypted traffic, routed to the worker first.

    ``deliver_rtp`` and ``deliver_rtcp`` hand a datagram on to aiortc as if never intercepted;
    ``send`` protects and sends without passing ``outgoing_rtcp``, which sees (and may rewrite)
    every RTCP datagram aiortc's own senders and receivers send.
    """

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        on_rtp: RtpHandler,
        on_rtcp: RtcpHandler,
        outgoing_rtcp: Callable[[bytes], bytes],
    ) -> None:
        self.dtls = dtls
        self._deliver_rtp: Deliver = dtls._handle_rtp_data
        self._deliver_rtcp: Deliver = dtls._handle_rtcp_data
        self.send: Send = dtls._send_rtp
        self._outgoing_rtcp = outgoing_rtcp

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
            await on_rtp(self, data, arrival_time_ms)

        async def handle_rtcp(data: bytes) -> None:
            await on_rtcp(self, data)

        # Instance attributes shadow the class's methods for this transport only.
        setattr(dtls, "_handle_rtp_data", handle_rtp)  # noqa: B010
        setattr(dtls, "_handle_rtcp_data", handle_rtcp)  # noqa: B010
        setattr(dtls, "_send_rtp", self._send_from_aiortc)  # noqa: B010

    async def deliver_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        await self._deliver_rtp(data, arrival_time_ms=arrival_time_ms)

    async def deliver_rtcp(self, data: bytes) -> None:
        await self._deliver_rtcp(data)

    async def _send_from_aiortc(self, data: bytes) -> None:
        if is_rtcp(data):
            data = self._outgoing_rtcp(data)
        await self.send(data)

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
