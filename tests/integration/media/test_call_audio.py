"""The call-audio DSP in the packet path between two real aiortc parties: every 20 ms packet of a
processed direction is decoded, processed and re-encoded (same sequence numbers and timestamps),
and the party hears it; an unprocessed direction stays the sender's bytes."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket
from prometheus_client import REGISTRY

from tandem.media.call import CallOptions
from tandem.media.dsp.pipeline import PipelineConfig
from tandem.v1 import media_pb2

from .conftest import CallFactory, Party, until

pytestmark = pytest.mark.integration


def processed_frames() -> float:
    return REGISTRY.get_sample_value("tandem_media_audio_frames_processed_total") or 0.0


def opus_payloads(packets: list[RtpPacket], payload_types: set[int]) -> list[bytes]:
    return [p.payload for p in packets if p.payload_type in payload_types]


async def test_the_shoppers_voice_is_processed_and_the_hosts_forwarded(media_call: CallFactory) -> None:
    before = processed_frames()
    options = CallOptions(audio={media_pb2.LEG_SHOPPER: PipelineConfig(sample_rate=48000), media_pb2.LEG_HOST: None})
    call = await media_call(options)
    await until(lambda: call.host.frames["audio"] >= 100 and call.shopper.frames["audio"] >= 100, timeout_s=20)
    assert processed_frames() - before >= 100
    assert set(call.call.processors) == {media_pb2.LEG_SHOPPER}

    shopper_sent = set(opus_payloads(call.shopper.tap.sent, call.shopper.payload_types("audio/opus")))
    host_got = opus_payloads(call.host.tap.received, call.host.payload_types("audio/opus"))
    assert len(host_got) >= 100
    assert not shopper_sent & set(host_got)  # re-encoded
    host_sent = set(opus_payloads(call.host.tap.sent, call.host.payload_types("audio/opus")))
    shopper_got = opus_payloads(call.shopper.tap.received, call.shopper.payload_types("audio/opus"))
    assert set(shopper_got) <= host_sent  # forwarded untouched
    # The host's leg is the shopper's echo reference: what the worker sent to the shopper (the
    # host's voice) was decoded for it although that direction is forwarded.
    assert call.call.directions[(media_pb2.LEG_HOST, "audio")].transform is not None


async def test_both_directions_processed_at_16_khz(media_call: CallFactory) -> None:
    config = PipelineConfig(sample_rate=16000, noise_attenuation_db=12.0)
    before = processed_frames()
    call = await media_call(
        CallOptions(audio={media_pb2.LEG_SHOPPER: config, media_pb2.LEG_HOST: config}), Party(), Party()
    )
    await until(lambda: call.host.frames["audio"] >= 100 and call.shopper.frames["audio"] >= 100, timeout_s=20)
    assert set(call.call.processors) == {media_pb2.LEG_SHOPPER, media_pb2.LEG_HOST}
    assert processed_frames() - before >= 2 * 100 * 2  # two directions, two 10 ms frames a packet
