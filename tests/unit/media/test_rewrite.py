"""A forwarded packet's datagram rewritten in place is exactly the packet serialised again with
the other leg's SSRC, payload type, sequence number, timestamp, mid and send time."""

from __future__ import annotations

from typing import cast

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.media.forwarding import ABS_SEND_TIME_URI, MID_URI, Negotiated, Outbound, ReceivedPacket
from tandem.media.seams import TransportHooks

pytestmark = pytest.mark.unit

IDS = {MID_URI: 4, ABS_SEND_TIME_URI: 2}
PAYLOAD_TYPES = st.integers(96, 127)
SEQUENCE_NUMBERS = st.integers(0, 0xFFFF)
WORDS = st.integers(0, 2**32 - 1)


class Recorder:
    """Stands in for a leg's transport: keeps what would be protected and sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_now(self, data: bytes) -> None:
        self.sent.append(data)


def extension_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    params = [RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in IDS.items()]
    extensions.configure(RTCRtpParameters(headerExtensions=params))
    return extensions


@settings(max_examples=200, deadline=None)
@given(
    incoming=st.tuples(
        st.integers(96, 127), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
    ),
    outgoing=st.tuples(
        st.integers(96, 127), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1)
    ),
    marker=st.booleans(),
    mids=st.sampled_from([("0", "1"), ("1", "0"), ("video", "audio")]),
    with_send_time=st.booleans(),
    payload=st.binary(min_size=1, max_size=1200),
)
def test_the_in_place_rewrite_is_the_full_serialisation(
    incoming: tuple[int, int, int, int], outgoing: tuple[int, int, int, int], marker: bool,
    mids: tuple[str, str], with_send_time: bool, payload: bytes,
) -> None:  # fmt: skip
    extensions = extension_map()
    original = RtpPacket(
        payload_type=incoming[0], sequence_number=incoming[1], timestamp=incoming[2], ssrc=incoming[3],
        marker=int(marker), payload=payload,
    )  # fmt: skip
    original.extensions.mid = mids[0]
    original.extensions.abs_send_time = 12345 if with_send_time else None
    received = ReceivedPacket.from_datagram(original.serialize(extensions), extensions)
    media = Negotiated("video", mids[1], [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)], {}, IDS)
    recorder = Recorder()
    outbound = Outbound(cast(TransportHooks, recorder), extensions, media, ssrc=outgoing[3], rtx_ssrc=1)
    outbound.send(received, outgoing[0], outgoing[1], outgoing[2], same_extensions=True)
    assert recorder.sent == [received.serialize(extensions)]
    if len(mids[0]) == len(mids[1]) and with_send_time:
        assert outbound.rewritten == 1  # the fast path was taken
