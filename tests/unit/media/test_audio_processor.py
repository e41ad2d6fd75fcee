"""The packet-path audio processor: a packet that does not decode passes as it came (the receiving
party conceals it) instead of failing, and the echo reference is paired with the capture by the
two streams' timestamps, whatever order and bursts their packets arrive in."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from tandem.media.audio import AudioProcessor, EchoReference
from tandem.media.dsp.pipeline import PipelineConfig

pytestmark = pytest.mark.unit

TICKS = 960  # one 20 ms Opus packet on the 48 kHz RTP clock


@pytest.mark.parametrize("payload", [b"", b"\xff", b"\x03"])
def test_a_packet_that_does_not_decode_passes_unchanged(payload: bytes) -> None:
    processor = AudioProcessor(PipelineConfig(sample_rate=48000), bitrate_bps=32000, complexity=5)
    packet = RtpPacket(payload=payload)
    assert processor.process(packet).payload == payload


def packet_audio(n: int) -> np.ndarray:
    """Packet `n` sent to the party: two 10 ms frames at 16 kHz holding 2n and 2n + 1."""
    return np.repeat([2.0 * n, 2.0 * n + 1], 160)


def test_nothing_sent_yet_is_silence() -> None:
    out = np.ones(160)
    EchoReference(16000).take(out, 1234)
    assert not out.any()


@given(
    sent_start=st.integers(0, 2**32 - 1),
    captured_start=st.integers(0, 2**32 - 1),
    lead=st.integers(0, 10),
    bursts=st.lists(st.integers(1, 4), min_size=60, max_size=60),
)
def test_the_pairing_follows_the_timestamps_through_bursts_and_wraps(
    sent_start: int, captured_start: int, lead: int, bursts: list[int]
) -> None:
    """Sent packets arrive `lead` packets ahead, then in bursts of 1-4 while the capture arrives
    one by one: after the first packets every capture frame is paired with the same distance."""
    reference = EchoReference(16000)
    sent = 0
    for _ in range(lead + 1):
        reference.push(packet_audio(sent), (sent_start + sent * TICKS) % 2**32)
        sent += 1
    distances = []
    out = np.zeros(160)
    for captured, burst in enumerate(bursts):
        for _ in range(burst if sent <= captured + lead + 4 else 0):
            reference.push(packet_audio(sent), (sent_start + sent * TICKS) % 2**32)
            sent += 1
        for k in range(2):
            reference.take(out, (captured_start + captured * TICKS + k * TICKS // 2) % 2**32)
            if out.any() or captured == 0:
                distances.append(out[0] - (2 * captured + k))
    assert len(set(distances[-40:])) == 1  # settled: one distance, never shifted by a burst


def test_a_pause_in_what_is_sent_keeps_the_pairing() -> None:
    reference = EchoReference(16000, settle_ms=100)
    out = np.zeros(160)
    for n in range(20):
        reference.push(packet_audio(n), n * TICKS)
        reference.take(out, n * TICKS)
    distance = out[0] - 2 * 19
    for n in range(20, 40):  # the other party muted: nothing sent, the capture goes on
        reference.take(out, n * TICKS)
        assert not out.any()
    reference.push(packet_audio(40), 40 * TICKS)
    reference.take(out, 40 * TICKS)
    assert out[0] - 2 * 40 == distance
