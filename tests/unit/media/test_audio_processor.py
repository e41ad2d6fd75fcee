"""The packet-path audio processor: a packet that does not decode passes as it came (the receiving
party conceals it) instead of failing, and the echo reference stays bounded and aligned."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from tandem.media.audio import AudioProcessor, EchoReference
from tandem.media.dsp.pipeline import PipelineConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("payload", [b"", b"\xff", b"\x03"])
def test_a_packet_that_does_not_decode_passes_unchanged(payload: bytes) -> None:
    processor = AudioProcessor(PipelineConfig(sample_rate=48000), bitrate_bps=32000, complexity=5)
    packet = RtpPacket(payload=payload)
    assert processor.process(packet).payload == payload


def test_the_echo_reference_keeps_only_what_was_sent_lately() -> None:
    reference = EchoReference(16000, max_ms=60)
    for n in range(10):  # 200 ms sent, nothing taken: only the last 60 ms (and a packet) remain
        reference.push(np.full(320, float(n)))
    out = np.zeros(160)
    reference.take(out)
    assert out[0] >= 6.0
    empty = EchoReference(16000)
    empty.take(out)
    assert not out.any()
