"""A call's media handling: the pool's settings unless the allocation says otherwise per party,
and a processing request outside the limits refused as the caller's mistake."""

from __future__ import annotations

import pytest

from tandem.common.errors import TandemError
from tandem.media.app import MediaWorkerApp
from tandem.media.dsp.pipeline import PipelineConfig
from tandem.media.legs import Leg
from tandem.media.settings import Settings
from tandem.v1 import common_pb2, media_pb2

pytestmark = pytest.mark.unit


def options(request: media_pb2.MediaAllocate, **settings: object) -> dict[Leg, PipelineConfig | None]:
    return dict(MediaWorkerApp(Settings.model_validate(settings), "w").call_options(request).audio)


def test_without_a_request_both_parties_get_the_pools_processing() -> None:
    audio = options(media_pb2.MediaAllocate(call_id="c"), noise_attenuation_db=12.0, audio_sample_rate=16000)
    for config in audio.values():
        assert config is not None
        assert (config.noise_attenuation_db, config.sample_rate) == (12.0, 16000)
    assert set(options(media_pb2.MediaAllocate(call_id="c"), audio_processing=False).values()) == {None}


def test_a_call_can_turn_one_partys_processing_off_or_change_it() -> None:
    request = media_pb2.MediaAllocate(
        call_id="c",
        shopper_audio=media_pb2.AudioProcessing(enabled=False),
        host_audio=media_pb2.AudioProcessing(enabled=True, echo_cancellation=True, noise_attenuation_db=6.0),
    )
    audio = options(request)
    assert audio[media_pb2.LEG_SHOPPER] is None
    host = audio[media_pb2.LEG_HOST]
    assert host is not None
    assert (host.echo_cancellation, host.gain_control, host.noise_attenuation_db) == (True, False, 6.0)


@pytest.mark.parametrize("attenuation", [-1.0, 61.0, float("nan")])
def test_noise_attenuation_outside_its_range_is_invalid_argument(attenuation: float) -> None:
    request = media_pb2.MediaAllocate(
        call_id="c", host_audio=media_pb2.AudioProcessing(enabled=True, noise_attenuation_db=attenuation)
    )
    with pytest.raises(TandemError) as error:
        options(request)
    assert error.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT
