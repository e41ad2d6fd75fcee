"""The aiortc internals the worker's forwarding hooks rely on. When an aiortc upgrade moves any of
them this fails, naming what moved, before a call can fail in production."""

from __future__ import annotations

import inspect

import aioice
import aiortc
import pytest
from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCRtpSender
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcrtpreceiver import StreamStatistics

from tandem.media.seams import AIOICE_SERIES, AIORTC_SERIES

pytestmark = pytest.mark.unit


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_aiortc_is_the_pinned_series() -> None:
    assert aiortc.__version__.startswith(AIORTC_SERIES), f"aiortc {aiortc.__version__}: re-check tandem.media.seams"


def test_aioice_is_the_pinned_series() -> None:
    assert aioice.__version__.startswith(AIOICE_SERIES), f"aioice {aioice.__version__}: re-check tandem.media.seams"


def test_the_sockets_the_worker_reads_are_where_it_looks() -> None:
    # The leg's SRTP keys and its ICE connection, as the DTLS transport holds them.
    setup = inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._rx_srtp = Session(rx_policy)" in setup
    assert "self._tx_srtp = Session(tx_policy)" in setup
    assert "self._set_state(State.CONNECTED)" in inspect.getsource(RTCDtlsTransport.start)
    assert "self._connection = gatherer._connection" in inspect.getsource(aiortc.rtcicetransport.RTCIceTransport)
    # aioice: one datagram protocol per local candidate, each with its asyncio transport, the
    # nominated pair per component, and the datagram entry point the hook shadows per instance.
    connection = inspect.getsource(Connection)
    assert "self._protocols: list[StunProtocol] = []" in connection
    assert "self._nominated: dict[int, CandidatePair] = {}" in connection
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in connection
    assert parameters(StunProtocol.datagram_received) == ["self", "data", "addr"]
    assert "self.transport = cast(asyncio.DatagramTransport, transport)" in inspect.getsource(StunProtocol)


def test_the_transport_methods_the_hooks_shadow_keep_their_signatures() -> None:
    assert parameters(RTCDtlsTransport._handle_rtp_data) == ["self", "data", "arrival_time_ms"]
    assert parameters(RTCDtlsTransport._handle_rtcp_data) == ["self", "data"]
    assert parameters(RTCDtlsTransport._send_rtp) == ["self", "data"]
    assert parameters(RtpRouter.route_rtp) == ["self", "packet"]


def test_the_transport_calls_the_hooks_through_the_instance() -> None:
    # The hooks are instance attributes: they take effect only while aiortc calls them via self.
    source = inspect.getsource(RTCDtlsTransport)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in source
    assert "await self._handle_rtcp_data(data)" in source
    assert "self._rtp_router = RtpRouter()" in source
    sender = inspect.getsource(RTCRtpSender)
    assert "await self.transport._send_rtp(payload)" in sender  # its RTCP, rewritten by the hook


def test_senders_announce_the_ssrcs_the_worker_writes_in() -> None:
    source = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in source
    assert "self._rtx_ssrc = random32()" in source


def test_reception_statistics_keep_their_shape() -> None:
    stats = StreamStatistics(90000)
    assert {"max_seq", "add", "fraction_lost", "packets_lost", "jitter"} <= set(dir(stats))
