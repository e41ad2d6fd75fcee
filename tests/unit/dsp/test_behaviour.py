"""What a caller notices: the canceller converges in a room and after a delay jump, the near-end talker
survives double talk, the noise estimate follows a street getting louder and quieter under speech, and
every stage stays bounded and finite on hostile input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from tandem.media.dsp.echo import EchoCanceller
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig, warm_up
from tests.unit.dsp.signals import talker

pytestmark = pytest.mark.unit
RATE = 16000
Signal = npt.NDArray[np.float64]
FRAME = 160


def room(seed: int, rt60_s: float = 0.2) -> Signal:
    """Synthetic room response: a direct path then exponentially decaying diffuse reflections."""
    rng = np.random.default_rng(seed)
    n = int(0.15 * RATE)
    decay = np.exp(-6.9 * np.arange(n) / (rt60_s * RATE))
    rir = rng.standard_normal(n) * decay * 0.08
    rir[:40] = 0.0
    rir[40] = 0.6
    return np.asarray(rir, dtype=np.float64)


def echo_of(far: Signal, delay_ms: float, rir: Signal) -> Signal:
    size = far.shape[0] + rir.shape[0]
    wet = np.fft.irfft(np.fft.rfft(far, size) * np.fft.rfft(rir, size), size)[: far.shape[0]]
    d = int(delay_ms * RATE / 1000)
    return np.concatenate([np.zeros(d), wet[: far.shape[0] - d]]).astype(np.float64)


def cancel(mic: Signal, far: Signal) -> tuple[Signal, EchoCanceller]:
    aec = EchoCanceller(RATE)
    out = np.zeros(FRAME)
    frames = mic.shape[0] // FRAME
    result = np.zeros(frames * FRAME)
    for i in range(frames):
        s = slice(i * FRAME, (i + 1) * FRAME)
        aec.process(mic[s], far[s], out)
        result[s] = out
    return result, aec


def erle_db(mic: Signal, out: Signal) -> float:
    return float(10 * np.log10(np.sum(mic**2) / np.sum(out**2)))


@pytest.mark.parametrize("delay_ms", [0, 250, 450])
def test_canceller_converges_in_a_room_and_finds_the_bulk_delay(delay_ms: int) -> None:
    far = talker(8.0, seed=1)
    mic = echo_of(far, delay_ms, room(2)) + 1e-4 * np.random.default_rng(3).standard_normal(far.shape[0])
    out, aec = cancel(mic, far)
    tail = slice(5 * RATE, 8 * RATE)
    assert erle_db(mic[tail], out[tail]) > 20.0
    assert abs(aec.report.delay_ms - delay_ms) <= 20.0
    assert aec.report.echo_present


def test_canceller_reconverges_after_the_delay_jumps() -> None:
    far = talker(14.0, seed=4)
    rir = room(5)
    half = 7 * RATE
    mic = echo_of(far, 100, rir)
    mic[half:] = echo_of(far, 350, rir)[half:]
    out, aec = cancel(mic, far)
    assert erle_db(mic[half - RATE : half], out[half - RATE : half]) > 15.0
    # re-locked and re-converged within three seconds of the jump
    assert erle_db(mic[half + 3 * RATE :], out[half + 3 * RATE :]) > 20.0
    assert abs(aec.report.delay_ms - 350) <= 20.0


def test_near_end_talker_survives_double_talk() -> None:
    far = talker(12.0, seed=6)
    near = np.zeros_like(far)
    near[6 * RATE :] = talker(6.0, seed=7)
    echo = echo_of(far, 200, room(8))
    out, _ = cancel(echo + near, far)
    dt = slice(6 * RATE, 12 * RATE)
    residual = out[dt] - near[dt]
    # the near end passes through and the echo underneath it is still cancelled
    assert erle_db(echo[dt], residual) > 10.0
    assert np.dot(out[dt], near[dt]) / np.dot(near[dt], near[dt]) > 0.9


def test_noise_estimate_follows_level_changes_under_speech() -> None:
    n = 12 * RATE
    t = np.arange(n) / RATE
    level_db = np.where((t >= 4.0) & (t < 8.0), -40.0, -50.0)
    noise = np.random.default_rng(11).standard_normal(n) * 10.0 ** (level_db / 20.0)
    x = talker(12.0, seed=12) + noise
    ns = NoiseSuppressor(RATE)
    out = np.zeros(FRAME)
    unity = np.ones(ns.plan.bins)
    error_db = []
    for i in range(0, n, FRAME):
        ns.process(x[i : i + FRAME], out, unity)
        error_db.append(10.0 * np.log10(ns.noise_power) - level_db[i])

    def at(seconds: float) -> float:
        return float(error_db[int(seconds * 100)])

    # the talker (24 dB above the noise) does not pass for noise, a 10 dB rise is followed within
    # two seconds, a 10 dB drop within one (the change detector; the plain second average took ~3 s)
    assert abs(at(3.9)) < 4.0
    assert abs(at(6.0)) < 3.0
    assert abs(at(9.0)) < 4.0
    assert abs(at(11.9)) < 3.0


def hostile_inputs(rate: int) -> dict[str, tuple[Signal, Signal]]:
    rng = np.random.default_rng(9)
    n = 3 * rate
    noise = rng.uniform(-1.0, 1.0, n)
    speech = np.repeat(talker(3.0, seed=10), rate // RATE)[:n]
    clipped = np.clip(speech * 60.0, -1.0, 1.0)
    jump = np.zeros(n)
    jump[: n // 2] = np.roll(speech, rate // 10)[: n // 2]
    jump[n // 2 :] = np.roll(speech, rate // 2)[n // 2 :]
    return {
        "silence": (np.zeros(n), np.zeros(n)),
        "dc": (np.full(n, 0.5), np.full(n, -0.5)),
        "full-scale noise": (noise, noise[::-1].copy()),
        "clipped": (clipped, clipped),
        "delay jump": (jump, speech),
    }


@pytest.mark.parametrize("rate", [16000, 48000])
def test_pipeline_output_is_bounded_and_finite_on_hostile_input(rate: int) -> None:
    frame = rate // 100
    for name, (near, far) in hostile_inputs(rate).items():
        pipeline = AudioPipeline(PipelineConfig(sample_rate=rate))
        out = np.zeros(frame)
        peak = 0.0
        for i in range(near.shape[0] // frame):
            s = slice(i * frame, (i + 1) * frame)
            pipeline.process(near[s], far[s], out)
            assert np.all(np.isfinite(out)), name
            peak = max(peak, float(np.max(np.abs(out))))
        assert peak <= 1.0, name
        stats = pipeline.stats()
        assert np.isfinite(stats.echo.erle_db), name
        assert np.isfinite(stats.meters.level_dbfs), name


def test_silence_stays_silent_and_clipping_is_metered() -> None:
    pipeline = AudioPipeline()
    out = np.zeros(FRAME)
    for _ in range(50):
        pipeline.process(np.zeros(FRAME), np.zeros(FRAME), out)
    assert np.max(np.abs(out)) < 1e-6
    for _ in range(10):
        pipeline.process(np.ones(FRAME), np.zeros(FRAME), out)
    assert pipeline.stats().meters.clipped_ratio > 0.1


def test_agc_brings_quiet_and_loud_talkers_to_the_target() -> None:
    levels = []
    for gain in (0.1, 3.0):
        pipeline = AudioPipeline(PipelineConfig(echo_cancellation=False, target_level_dbfs=-23.0))
        x = np.clip(talker(8.0, seed=11) * gain, -1.0, 1.0)
        out = np.zeros(FRAME)
        y = []
        for i in range(x.shape[0] // FRAME):
            pipeline.process(x[i * FRAME : (i + 1) * FRAME], np.zeros(FRAME), out)
            y.append(out.copy())
        tail = np.concatenate(y)[5 * RATE :]
        levels.append(10 * np.log10(np.mean(tail**2)))
    assert abs(levels[0] - levels[1]) < 4.0


def test_what_is_left_of_the_echo_neither_counts_as_talk_nor_raises_the_agc_gain() -> None:
    """Only the far end talks; the capture is its echo and a quiet room. However well the canceller
    does, the AGC must not turn the left-over echo up, nor the meters call it the party's talk;
    when the party then talks (the far end quiet), the AGC does its work."""
    pipeline = AudioPipeline(PipelineConfig())
    far = talker(12.0, seed=31)
    quiet_room = np.random.default_rng(32).standard_normal(far.shape[0]) * 10 ** (-75 / 20)
    mic = echo_of(far, 120, room(33)) * 0.5 + quiet_room
    out = np.zeros(FRAME)
    talk = []
    for i in range(mic.shape[0] // FRAME):
        s = slice(i * FRAME, (i + 1) * FRAME)
        talk.append(pipeline.process(mic[s], far[s], out))
    assert pipeline.agc.gain_db <= 0.5
    converged = talk[2 * RATE // FRAME :]  # the canceller has found the echo
    print(f"far end only: {np.mean(talk):.1%} of frames taken for talk, {np.mean(converged):.1%} once converged")
    assert np.mean(converged) < 0.02
    quiet_talker = talker(8.0, seed=34) * 0.1  # about -46 dBFS
    for i in range(quiet_talker.shape[0] // FRAME):
        pipeline.process(quiet_talker[i * FRAME : (i + 1) * FRAME], np.zeros(FRAME), out)
    assert pipeline.agc.gain_db > 10.0


def _peak_bytes_per_frame(rate: int) -> tuple[int, int]:
    """(bytes still held, peak bytes above the start) while a warm pipeline processes 30 frames."""
    frame = rate // 100
    pipeline = AudioPipeline(PipelineConfig(sample_rate=rate))
    frames = [f.copy() for f in talker(0.5, seed=20).repeat(rate // RATE).reshape(-1, frame)]
    out = np.zeros(frame)
    for f in frames[:20]:
        pipeline.process(f, f, out)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for f in frames[20:]:
            pipeline.process(f, f, out)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held - start, peak - start


def test_a_frame_allocates_no_audio_buffers() -> None:
    # numpy buffers are traced; what a frame allocates is the call's own small objects, the same at
    # 48 kHz as at 16 kHz, far below one 48 kHz frame of samples (3840 bytes) and all released
    held_16k, peak_16k = _peak_bytes_per_frame(16000)
    held_48k, peak_48k = _peak_bytes_per_frame(48000)
    assert held_16k == held_48k == 0
    assert peak_48k == peak_16k < 480 * 8


def test_warm_up_compiles_every_configuration() -> None:
    warm_up()
