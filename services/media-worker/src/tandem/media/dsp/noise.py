"""Noise suppression: noise-floor tracking and a two-step MMSE log-spectral-amplitude gain with
harmonic regeneration.

Noise. The noise power per bin follows the speech-presence-probability estimator of Gerkmann &
Hendriks (2012): where speech is unlikely the periodogram updates the noise estimate, where it is
likely the estimate holds. That estimate is averaged once more over about a second (a running mean
over the first second of a call), which removes most of its frame-to-frame variance and the speech
that leaks into it; the gain uses the averaged estimate. Two additions let it follow a street whose
noise changes level: a minimum-statistics floor (Martin 2001) — the bias-compensated minimum of the
smoothed periodogram over the last 1.6 s, kept in four sub-windows — below which the estimate may not
stay, so a rise is tracked within that window although speech-presence holds the estimate; and a
change detector — when most bins of the fast estimate sit more than 2 dB from the averaged one for
100 ms, the average follows with a 100 ms time constant until they agree again.

Gain. The first gain is the log-spectral-amplitude (MMSE-LSA) gain of the decision-directed a priori
SNR (Ephraim & Malah); as in the two-step scheme of Plapous, Marro & Scalart (2006) it gives a second
a priori SNR (gain squared times the a posteriori SNR, without the decision-directed one-frame lag at
onsets) and a second LSA gain, and their geometric mean is the two-step gain. Above 1 kHz, harmonic
regeneration (the same paper) restores harmonics that the two-step gain suppressed at low SNR: the
enhanced frame is half-wave rectified, which recreates harmonics of its fundamental, and the
regenerated spectrum, weighted by one minus the two-step gain, joins the a priori SNR of a third LSA
gain; the applied gain is the geometric mean of the two-step and the regenerated gain. Below 1 kHz
the low harmonics are estimated well already and rectification mostly adds its own low-frequency
envelope, so regeneration is not applied there. All gains have a floor of ``-max_attenuation_db``.

The suppressor owns the analysis/synthesis STFT (sqrt-Hann, two frames long, one-frame hop), so it is
also where the echo canceller's residual-echo gain is applied: one transform pair per frame for both
(and a second pair for the regeneration). Latency: one frame (10 ms).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Complex, FftPlan, Index, Real, irfft, rfft
from tandem.media.dsp._jit import FASTMATH

_XI_H1 = 31.6
"""Typical a priori SNR when speech is present (15 dB), for the noise tracker's presence probability."""
_NOISE_SMOOTHING = 0.9
_DD_ALPHA = 0.98
_XI_MIN = 10.0 ** (-25.0 / 10.0)
_STUCK_PRESENCE = 0.99
_SLOW_SMOOTHING = 0.99
"""Second averaging of the noise estimate (time constant 1 s at 10 ms frames)."""
_CHANGE_RATIO = 1.6
"""A bin has changed when the fast and the averaged noise estimates differ by this factor (2 dB)..."""
_CHANGE_FRACTION = 0.7
"""...and the noise has changed when this fraction of the bins has, in the same direction..."""
_CHANGE_FRAMES = 10
"""...for this many frames in a row; the average then uses:"""
_CHANGE_SMOOTHING = 0.9
_MIN_SMOOTHING = 0.7
"""Smoothing of the periodogram whose minimum is tracked (short, so speech pauses reach the floor)."""
_MIN_SUBWINDOWS = 4
_MIN_SUBWINDOW_FRAMES = 40
_MIN_BIAS = 2.0
"""The floor is twice that minimum: about half the mean in steady noise, so it binds only after a rise."""
REGENERATION_FROM_HZ = 1000.0
"""Harmonic regeneration applies above this frequency."""


class NoiseBins(NamedTuple):
    """The suppressor's per-bin state (one float64 array of ``bins`` values each)."""

    noise: Real  # speech-presence noise estimate
    slow: Real  # its second average, which the gain uses
    presence: Real  # smoothed speech-presence probability
    clean_prev: Real  # last frame's clean-speech power estimate (decision-directed SNR)
    prior: Real  # a priori SNR of the last frame
    post: Real  # a posteriori SNR of the last frame
    gain: Real  # the applied noise gain
    smoothed: Real  # periodogram smoothed for the minimum statistics
    sub_min: Real  # its minimum over the current sub-window
    floor_min: Real  # the minimum over the completed sub-windows
    power: Real  # |Y|^2 of this frame


NOISE_STATE = np.dtype(
    [
        ("started", np.bool_),  # a frame has been seen (the estimates start from it)
        ("frames", np.int64),  # frames processed
        ("changed_frames", np.int64),  # frames in a row in which the noise has changed
        ("bins_up", np.int64),  # bins whose fast estimate is above the averaged one by the change ratio
        ("bins_down", np.int64),  # ...and below it
    ]
)
"""The suppressor's scalar state (one record)."""


def analysis_window(frame: int) -> Real:
    """Periodic sqrt-Hann window of two frames; squared, it overlap-adds to 1 at a one-frame hop."""
    n = np.arange(2 * frame)
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * n / (2 * frame)))


class NoiseSuppressor:
    """Per-call-direction noise suppressor state.

    ``sample_rate`` in Hz (10 ms frames), ``max_attenuation_db`` the gain floor applied where speech
    is absent (a positive number of dB); 0 turns suppression off but keeps the noise estimate and the
    STFT that applies the residual-echo gain.
    """

    def __init__(self, sample_rate: int = 16000, max_attenuation_db: float = 25.0) -> None:
        frame = sample_rate // 100
        self.frame = frame
        self.plan = FftPlan(2 * frame)
        bins = self.plan.bins
        self.window: Real = analysis_window(frame)
        self.gain_floor = 10.0 ** (-max_attenuation_db / 20.0)
        self.regeneration_from = math.ceil(REGENERATION_FROM_HZ * self.plan.size / sample_rate)
        self.input: Real = np.zeros(2 * frame)
        self.overlap: Real = np.zeros(frame)
        self.time: Real = np.zeros(self.plan.size)
        self.spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.regenerated: Complex = np.zeros(bins, dtype=np.complex128)
        self.bins = NoiseBins(*(np.zeros(bins) for _ in NoiseBins._fields))
        self.bins.gain[:] = 1.0
        # the kernel takes the arrays as a plain tuple in NoiseBins' order (Numba boxes a NamedTuple
        # argument anew on every call and keeps part of it)
        self._bins = tuple(self.bins)
        self.past_minima: Real = np.zeros((_MIN_SUBWINDOWS, bins))
        self.state = np.zeros(1, dtype=NOISE_STATE)
        # per-bin a priori and a posteriori SNR of the last frame, read by the VAD, and the applied gain
        self.prior_snr: Real = self.bins.prior
        self.post_snr: Real = self.bins.post
        self.gain: Real = self.bins.gain

    def process(self, signal: Real, out: Real, extra_gain: Real) -> None:
        """Suppress noise in one frame of ``signal`` into ``out`` (delayed by one frame).

        ``extra_gain`` (one value per FFT bin, e.g. the residual-echo gain) multiplies the noise gain.
        """
        p = self.plan
        suppress_frame(
            signal, out, extra_gain, self.window, self.input, self.overlap, self.time, self.spectrum,
            self.regenerated, self._bins, self.past_minima, self.state, self.gain_floor, self.regeneration_from,
            p.work, p.order, p.twiddle, p.split,
        )  # fmt: skip

    @property
    def noise_power(self) -> float:
        """Estimated noise power per sample (normalized full scale 1.0, mean square)."""
        n = self.plan.size
        return float(2.0 * np.sum(self.bins.slow) / (n * float(np.sum(self.window**2))))


def exp1(v: Real) -> Real:
    """Exponential integral E1 by its power series below 1 and a continued fraction above."""
    v = np.maximum(np.asarray(v, dtype=np.float64), 1e-10)
    k = np.arange(1, 40)[:, None]
    small = np.minimum(v, 1.0)
    terms = (-1.0) ** (k + 1) * small**k / (k * np.cumprod(k, axis=0))
    series = -np.euler_gamma - np.log(small) + np.sum(terms, axis=0)
    large = np.maximum(v, 1.0)
    frac = np.zeros_like(large)
    for n in range(60, 0, -1):  # E1(v) = exp(-v) / (v + 1/(1 + 1/(v + 2/(1 + 2/(v + ...)))))
        frac = n / (1.0 + n / (large + frac))
    cont = np.exp(-large) / (large + frac)
    return np.asarray(np.where(v < 1.0, series, cont), dtype=np.float64)


_LSA_STEPS_PER_UNIT = 64
_LSA_TABLE_END = 16.0
"""Above this, exp(E1(v)/2) differs from 1 by less than 1e-8."""


def _lsa_table() -> Real:
    """``sqrt(v) * exp(E1(v) / 2)`` on a grid of 1/64 over [0, 16], smooth enough to interpolate linearly
    (about 1e-6 relative): ``exp(E1(v)/2)`` itself grows like ``1/sqrt(v)`` towards 0."""
    v = np.arange(int(_LSA_TABLE_END * _LSA_STEPS_PER_UNIT) + 2) / _LSA_STEPS_PER_UNIT
    table = np.sqrt(v) * np.exp(0.5 * exp1(v))
    table[0] = math.exp(-0.5 * np.euler_gamma)  # the limit at 0
    return table


_LSA_TABLE = _lsa_table()


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _lsa_factor(v: float) -> float:
    """``exp(E1(v) / 2)``, the MMSE-LSA correction of the Wiener gain, from the table (no ``exp``)."""
    if v >= _LSA_TABLE_END:
        return 1.0
    v = max(v, 1e-10)
    x = v * _LSA_STEPS_PER_UNIT
    i = int(x)
    low = float(_LSA_TABLE[i])
    return (low + (x - i) * (float(_LSA_TABLE[i + 1]) - low)) / math.sqrt(v)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _track_noise(spec: Complex, b: tuple[Real, ...], past_minima: Real, state: npt.NDArray[np.void]) -> None:
    """Update the per-bin noise estimates from this frame's spectrum (see the module docstring);
    ``b`` holds the :class:`NoiseBins` arrays in their order."""
    noise, slow, presence, _, _, _, _, smoothed, sub_min, floor_min, power = b
    bins = spec.shape[0]
    s = state[0]
    started = s.started
    s.started = True
    frames = s.frames
    s.frames = frames + 1
    keep = min(_SLOW_SMOOTHING, 1.0 - 1.0 / (frames + 1.0))
    changed = max(s.bins_up, s.bins_down) > _CHANGE_FRACTION * bins
    s.changed_frames = s.changed_frames + 1 if changed else 0
    if s.changed_frames >= _CHANGE_FRAMES:
        keep = min(keep, _CHANGE_SMOOTHING)
    rotate = frames > 0 and frames % _MIN_SUBWINDOW_FRAMES == 0
    slot = (frames // _MIN_SUBWINDOW_FRAMES) % _MIN_SUBWINDOWS
    log_h1 = 1.0 + _XI_H1
    ratio_h1 = _XI_H1 / (1.0 + _XI_H1)
    up = 0
    down = 0
    for k in range(bins):
        y_pow = spec[k].real ** 2 + spec[k].imag ** 2 + 1e-20
        power[k] = y_pow
        if not started:
            noise[k] = y_pow
            smoothed[k] = y_pow
            sub_min[k] = y_pow
        # speech-presence tracker with a fixed typical speech SNR
        post = y_pow / noise[k]
        exponent = post * ratio_h1
        p_h1 = 1.0 if exponent > 30.0 else 1.0 / (1.0 + log_h1 * math.exp(-exponent))
        presence[k] = 0.9 * presence[k] + 0.1 * p_h1
        if presence[k] > _STUCK_PRESENCE:
            p_h1 = min(p_h1, _STUCK_PRESENCE)
        noise[k] = _NOISE_SMOOTHING * noise[k] + (1.0 - _NOISE_SMOOTHING) * (p_h1 * noise[k] + (1.0 - p_h1) * y_pow)
        # minimum-statistics floor over the completed sub-windows and the current one
        smoothed[k] = _MIN_SMOOTHING * smoothed[k] + (1.0 - _MIN_SMOOTHING) * y_pow
        if rotate:
            past_minima[slot, k] = sub_min[k]
            sub_min[k] = smoothed[k]
            low = past_minima[0, k]
            for u in range(1, _MIN_SUBWINDOWS):
                low = min(low, past_minima[u, k])
            floor_min[k] = low
        else:
            sub_min[k] = min(sub_min[k], smoothed[k])
        noise[k] = max(noise[k], _MIN_BIAS * min(floor_min[k], sub_min[k]))
        slow[k] = keep * slow[k] + (1.0 - keep) * noise[k]
        if noise[k] > _CHANGE_RATIO * slow[k]:
            up += 1
        elif noise[k] * _CHANGE_RATIO < slow[k]:
            down += 1
    s.bins_up = up
    s.bins_down = down


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def suppress_frame(
    signal: Real, out: Real, extra_gain: Real, window: Real, buf: Real, overlap: Real, time: Real,
    spec: Complex, regen: Complex, b: tuple[Real, ...], past_minima: Real, state: npt.NDArray[np.void],
    gain_floor: float, regeneration_from: int, work: Real, order: Index, tw: Real, split: Complex,
) -> None:  # fmt: skip
    """One frame of the suppressor; see :meth:`NoiseSuppressor.process`."""
    frame = signal.shape[0]
    span = 2 * frame
    for i in range(frame):
        buf[i] = buf[i + frame]
        buf[frame + i] = signal[i]
    for i in range(span):
        time[i] = buf[i] * window[i]
    time[span:] = 0.0
    rfft(time, spec, work, order, tw, split)
    _track_noise(spec, b, past_minima, state)

    bins = spec.shape[0]
    _, slow, _, clean_prev, prior_snr, post_snr, gain, _, _, _, power = b
    # decision-directed a priori SNR and its LSA gain
    for k in range(bins):
        y_pow = power[k]
        post = y_pow / slow[k]
        xi = _DD_ALPHA * clean_prev[k] / slow[k] + (1.0 - _DD_ALPHA) * max(post - 1.0, 0.0)
        xi = max(xi, _XI_MIN)
        prior_snr[k] = xi
        post_snr[k] = post
        g1 = 1.0
        if gain_floor < 1.0:
            g1 = min(max(xi / (1.0 + xi) * _lsa_factor(post * xi / (1.0 + xi)), gain_floor), 1.0)
        clean_prev[k] = g1 * g1 * y_pow
        gain[k] = g1
    if gain_floor < 1.0:
        # the two-step a priori SNR and its LSA gain, in their own loop (two LSA factors in one loop
        # body compile to much slower code)
        for k in range(bins):
            g1 = gain[k]
            xi2 = max(g1 * g1 * post_snr[k], _XI_MIN)
            g2 = min(xi2 / (1.0 + xi2) * _lsa_factor(post_snr[k] * xi2 / (1.0 + xi2)), 1.0)
            gain[k] = max(math.sqrt(g1 * g2), gain_floor)
        # harmonic regeneration: rectify the enhanced frame, weigh its spectrum in by 1 - gain
        for k in range(bins):
            regen[k] = spec[k] * gain[k]
        irfft(regen, time, work, order, tw, split)
        for i in range(time.shape[0]):
            time[i] = max(time[i], 0.0)
        rfft(time, regen, work, order, tw, split)
        for k in range(regeneration_from, bins):
            g = gain[k]
            enhanced = g * g * power[k]
            harmonic = regen[k].real ** 2 + regen[k].imag ** 2
            xi3 = max((g * enhanced + (1.0 - g) * harmonic) / slow[k], _XI_MIN)
            g3 = min(max(xi3 / (1.0 + xi3) * _lsa_factor(post_snr[k] * xi3 / (1.0 + xi3)), gain_floor), 1.0)
            gain[k] = math.sqrt(g * g3)
    for k in range(bins):
        spec[k] *= gain[k] * extra_gain[k]

    irfft(spec, time, work, order, tw, split)
    for i in range(frame):
        out[i] = overlap[i] + time[i] * window[i]
        overlap[i] = time[frame + i] * window[frame + i]
