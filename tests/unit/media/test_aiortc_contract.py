"""The aiortc internals the worker's forwarding hooks rely on. When an aiortc upgrade moves any of
them this fails, naming what moved, before a call can fail in production."""

from __future__ import annotations

import inspect

import aiortc
import pytest
from aiortc import RTCDtlsTransport, RTCRtpSender
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcrtpreceiver import StreamStatistics

from tandem.media.seams import AIORTC_SERIES

pytestmark = pytest.mark.unit


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_aiortc_is_the_pinned_series() -> None:
    assert aiortc.__version__.startswith(AIORTC_SERIES), f"aiortc {aiortc.__version__}: re-check tandem.media.seams"


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
