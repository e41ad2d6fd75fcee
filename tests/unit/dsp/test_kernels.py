"""Each Numba kernel equals its NumPy reference; streaming in frames equals batch processing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.media.dsp._fft import FftPlan, Real, irfft, rfft
from tandem.media.dsp.agc import GainControl
from tandem.media.dsp.delay import BANDS, _band_bits, _band_powers
from tandem.media.dsp.echo import EchoCanceller, _filter_output
from tandem.media.dsp.meters import CLIP_LEVEL, AudioMeters
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.resample import Decimator, Interpolator
from tandem.media.dsp.vad import VoiceActivityDetector
from tests.unit.dsp.reference import (
    band_bits,
    decimate,
    gain_control,
    interpolate,
    partitioned_echo,
    suppress,
    vad_scores,
)

pytestmark = pytest.mark.unit
FEW = settings(max_examples=12, deadline=None)


def signal(seed: int, n: int, scale: float = 0.3) -> Real:
    return np.random.default_rng(seed).standard_normal(n) * scale


def stream(step: Callable[[Real, Real], None], x: Real, frame_in: int, frame_out: int) -> Real:
    """Run ``step(frame, out)`` over ``x`` frame by frame and concatenate the outputs."""
    out = np.zeros(frame_out)
    chunks = []
    for frame in x.reshape(-1, frame_in):
        step(frame, out)
        chunks.append(out.copy())
    return np.concatenate(chunks)


FFT_SIZES = st.one_of(
    st.integers(3, 11).map(lambda bits: 1 << bits),
    st.builds(lambda a, b, c: 2 * 2**a * 3**b * 5**c, st.integers(0, 6), st.integers(0, 2), st.integers(0, 2)).filter(
        lambda n: n >= 8
    ),
)


@FEW
@given(size=FFT_SIZES, seed=st.integers(0, 2**32 - 1))
def test_real_fft_matches_numpy(size: int, seed: int) -> None:
    plan = FftPlan(size)
    x = signal(seed, plan.size)
    spectrum = np.zeros(plan.bins, dtype=np.complex128)
    rfft(x, spectrum, plan.work, plan.order, plan.twiddle, plan.split)
    np.testing.assert_allclose(spectrum, np.fft.rfft(x), atol=1e-9)
    back = np.zeros(plan.size)
    irfft(spectrum, back, plan.work, plan.order, plan.twiddle, plan.split)
    np.testing.assert_allclose(back, x, atol=1e-12)


@pytest.mark.parametrize("size", [7, 6, 14, 44, 2 * 7 * 16])
def test_fft_plan_refuses_sizes_it_cannot_transform(size: int) -> None:
    with pytest.raises(ValueError, match="FFT size"):
        FftPlan(size)


@FEW
@given(frames=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_resamplers_streamed_equal_batch_convolution(frames: int, seed: int) -> None:
    x48 = signal(seed, 480 * frames)
    streamed = stream(Decimator(480).process, x48, 480, 160)
    np.testing.assert_allclose(streamed, decimate(x48), atol=1e-12)
    streamed_up = stream(Interpolator(160).process, streamed, 160, 480)
    np.testing.assert_allclose(streamed_up, interpolate(streamed), atol=1e-12)


@FEW
@given(
    # past 100 frames the second noise average leaves its running-mean start, past 160 the
    # minimum-statistics floor is up, and the level drop half-way sets off the change detector
    frames=st.one_of(st.integers(2, 12), st.just(260)),
    seed=st.integers(0, 2**32 - 1),
    attenuation=st.sampled_from([0.0, 12.0, 25.0]),
    level=st.floats(1e-4, 0.5),
)
def test_noise_suppressor_streamed_equals_reference(frames: int, seed: int, attenuation: float, level: float) -> None:
    x = signal(seed, 160 * frames, level)
    x[: 160 * (frames // 2)] *= 10.0
    x[160 * (frames // 2) :] += 0.3 * np.sin(np.arange(160 * (frames - frames // 2)) * 0.2)
    ns = NoiseSuppressor(16000, attenuation)
    unity = np.ones(ns.plan.bins)
    streamed = stream(lambda f, out: ns.process(f, out, unity), x, 160, 160)
    expected, prior, post = suppress(x, 160, ns.gain_floor)
    # the kernel's LSA factor is a table interpolated to ~1e-6 relative, the reference's E1 is exact;
    # the tolerance scales with the input because the rectification and the bin counts amplify rounding
    np.testing.assert_allclose(streamed, expected, rtol=1e-3, atol=1e-6 * np.max(np.abs(x)))
    np.testing.assert_allclose(ns.prior_snr, prior, rtol=1e-3)
    np.testing.assert_allclose(ns.post_snr, post, rtol=1e-3)
    vad = VoiceActivityDetector(threshold=1e9)
    vad.process(ns.prior_snr, ns.post_snr)
    assert vad.score == pytest.approx(vad_scores(prior, post, vad.first_bin, vad.last_bin), rel=1e-3, abs=1e-6)


def test_suppressor_without_attenuation_reconstructs_the_input_one_frame_late() -> None:
    x = signal(3, 160 * 20)
    ns = NoiseSuppressor(16000, max_attenuation_db=0.0)
    unity = np.ones(ns.plan.bins)
    y = stream(lambda f, out: ns.process(f, out, unity), x, 160, 160)
    np.testing.assert_allclose(y[160:], x[:-160], atol=1e-12)


@FEW
@given(
    frames=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    level=st.floats(1e-4, 3.0),
    speech_seed=st.integers(0, 1000),
)
def test_gain_control_equals_reference(frames: int, seed: int, level: float, speech_seed: int) -> None:
    x = signal(seed, 160 * frames, level)
    speech = np.random.default_rng(speech_seed).random(frames) > 0.3
    agc = GainControl(target_dbfs=-20.0)
    flags = iter(speech)
    streamed = stream(lambda f, out: agc.process(f, out, bool(next(flags))), x, 160, 160)
    expected = gain_control(x, speech, 160, agc.target, agc.slew, agc.ceiling, agc.max_gain, agc.min_gain)
    np.testing.assert_allclose(streamed, expected, rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(streamed) <= 1.0)


@FEW
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(1e-3, 2.0))
def test_meters_equal_reference(seed: int, level: float) -> None:
    x = np.clip(signal(seed, 160 * 10, level), -1.0, 1.0)
    speech = [bool(i % 3) for i in range(10)]
    meters = AudioMeters()
    for f, s in zip(x.reshape(-1, 160), speech, strict=True):
        meters.process(f, s)
    reading = meters.reading(noise_floor_dbfs=-60.0)
    assert reading.peak_dbfs == pytest.approx(20 * np.log10(np.max(np.abs(x)) + 1e-12))
    assert reading.clipped_ratio == pytest.approx(np.mean(np.abs(x) >= CLIP_LEVEL))
    assert reading.talk_time_s == pytest.approx(0.01 * sum(speech))
    assert reading.snr_db == pytest.approx(reading.speech_level_dbfs + 60.0)


@FEW
@given(seed=st.integers(0, 2**32 - 1), newest=st.integers(0, 80), base=st.integers(0, 40))
def test_partitioned_filter_equals_reference(seed: int, newest: int, base: int) -> None:
    aec = EchoCanceller(16000)
    rng = np.random.default_rng(seed)
    aec.bg_weights[:] = rng.standard_normal(aec.bg_weights.shape).astype(np.float32)
    aec.far_spectra[:] = rng.standard_normal(aec.far_spectra.shape).astype(np.float32)
    for planes in (aec.bg_weights, aec.far_spectra):
        planes[1, :, [0, -1]] = 0.0  # real signals: DC and Nyquist bins are real
    p = aec.plan
    spectrum = np.zeros(p.bins, dtype=np.complex128)
    echo = np.zeros(aec.frame)
    _filter_output(
        aec.bg_weights, aec.far_spectra, newest, base, aec.accumulator, spectrum, aec.time, echo,
        p.work, p.order, p.twiddle, p.split,
    )  # fmt: skip
    rows = [(newest - base - q) % aec.history for q in range(aec.partitions)]
    expected = partitioned_echo(aec.bg_weights, aec.far_spectra, rows)
    np.testing.assert_allclose(spectrum, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(echo, np.fft.irfft(expected, p.size)[-aec.frame :], rtol=1e-4, atol=1e-4)


@FEW
@given(seed=st.integers(0, 2**32 - 1))
def test_band_bits_equal_reference(seed: int) -> None:
    aec = EchoCanceller(16000)
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal(aec.plan.bins) + 1j * rng.standard_normal(aec.plan.bins)
    mean = rng.random(BANDS) * 2.0
    expected = band_bits(np.abs(spectrum) ** 2, aec.delay.band_edges, mean)
    bands = np.zeros(BANDS)
    _band_powers(spectrum, aec.delay.band_edges, bands)
    bits, active = _band_bits(bands, mean.copy())
    assert active
    assert int(bits) == expected
