"""Echo removed in a real call, over real WebRTC: the host talks (an espeak-ng voice); the
shopper's loudspeaker plays what the worker sent into the shopper's microphone (150 ms behind,
then 300 ms: a device's buffer grew), through a small room, attenuated and lightly distorted;
later the shopper talks too (another voice, another language). The worker processes the shopper's
voice with its default pipeline; the host hears the result. The baseline is the same call with the
shopper's voice forwarded untouched, measured the same way at the host, in the same run.

Prints, over `TANDEM_ECHO_CALLS` calls (default 5): ERLE at the host before and after the jump (echo
the host hears without processing / with), seconds until it is back over 20 dB after the jump, and
the shopper's voice in double talk (SI-SDR at the host) beside the forwarded baseline.
Reproduce: `make bench PYTEST_ARGS="-k echo_call"`.
"""

from __future__ import annotations

import asyncio
import os
import statistics

import numpy as np
from pesq import pesq
from scipy.signal import resample_poly

from tandem.media.call import CallOptions
from tandem.media.dsp.pipeline import PipelineConfig
from tandem.v1 import media_pb2
from tests.integration.media.conftest import CallFactory, Party, media_call
from tests.integration.media.echo_trial import (
    DOUBLE_TALK_S,
    END_S,
    FRAME,
    RATE,
    EchoingMicrophone,
    Heard,
    Talk,
    compare,
    to_mono,
)
from tests.unit.dsp.signals import spoken

__all__ = ["media_call"]  # the fixture, shared with the media integration tests


def pesq_wb(heard: Heard) -> float:
    """PESQ-WB of the shopper's voice as the host heard it in double talk (against the voice alone)."""
    a, b = int(DOUBLE_TALK_S * RATE), int(END_S * RATE)
    reference, degraded = (resample_poly(x[a:b], 1, RATE // 16000) for x in (heard.near, heard.audio))
    return float(pesq(16000, reference, degraded, "wb"))


TARGET_ERLE_DB = 20.0
FAR_TEXT = (
    "Good evening and welcome. This serum is our best seller this season: thirty millilitres, "
    "fragrance free, and it ships to your country in four days. Shall I show you the texture?"
)
NEAR_TEXT = "Ja, bitte. Wie lange hält eine Flasche, und kann ich sie zurückschicken, wenn sie mir nicht passt?"


async def echo_call(media_call: CallFactory, processing: PipelineConfig | None) -> Heard:
    far = np.tile(spoken("en-us", FAR_TEXT, RATE), 4)
    near = np.zeros(int(END_S * RATE))
    said = spoken("de", NEAR_TEXT, RATE)[: len(near) - int(DOUBLE_TALK_S * RATE)]
    near[int(DOUBLE_TALK_S * RATE) : int(DOUBLE_TALK_S * RATE) + len(said)] = said
    mic = EchoingMicrophone(near)
    heard: list[np.ndarray] = []
    shopper = Party(voice=mic, on_audio=mic.play)
    host = Party(voice=Talk(far), on_audio=lambda frame: heard.append(to_mono(frame)))
    options = CallOptions(audio={media_pb2.LEG_SHOPPER: processing, media_pb2.LEG_HOST: None})
    call = await media_call(options, shopper=shopper, host=host)
    while mic.index * FRAME < END_S * RATE:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the last frames on their way
    await call.shopper.close()
    await call.host.close()
    return Heard.of(mic, np.concatenate(heard), near)


async def test_echo_removed_in_a_call(media_call: CallFactory) -> None:
    forwarded = await echo_call(media_call, None)
    calls = [
        await echo_call(media_call, PipelineConfig(sample_rate=RATE))
        for _ in range(int(os.environ.get("TANDEM_ECHO_CALLS", "5")))
    ]
    runs = [compare(heard, forwarded, TARGET_ERLE_DB) for heard in calls]

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):5.2f}  min {min(values):5.2f}  max {max(values):5.2f}"

    back = [r.reconvergence_s for r in runs]
    print(f"\necho in a call ({len(runs)} calls, default pipeline at 48 kHz, baseline: forwarded)")
    print(f"  ERLE at the host, 150 ms behind (dB)  {spread([r.erle_before_jump_db for r in runs])}")
    print(f"  ERLE at the host, 300 ms behind (dB)  {spread([r.erle_after_jump_db for r in runs])}")
    print(f"  back over {TARGET_ERLE_DB:.0f} dB after the jump (s)  "
          f"{', '.join('never' if s is None else f'{s:.1f}' for s in back)}")  # fmt: skip
    print(f"  shopper's voice in double talk, SI-SDR (dB)  {spread([r.si_sdr_db for r in runs])}  "
          f"forwarded {runs[0].si_sdr_baseline_db:.1f}")  # fmt: skip
    print(f"  shopper's voice in double talk, PESQ-WB  {spread([pesq_wb(heard) for heard in calls])}  "
          f"forwarded {pesq_wb(forwarded):.2f}")  # fmt: skip
    assert all(r.erle_before_jump_db > 0 for r in runs)  # the trial measures what it should
