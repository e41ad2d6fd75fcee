"""Noise suppression: noise-floor tracking and a two-step MMSE log-spectral-amplitude gain.

The noise power per bin follows the speech-presence-probability estimator of Gerkmann & Hendriks
(2012): where speech is unlikely the periodogram updates the noise estimate, where it is likely the
estimate holds. That estimate is averaged once more over about a second (a running mean over the
first second of a call), which removes most of its frame-to-frame variance and the speech that leaks
into it; the gain uses the averaged estimate. The first gain is the log-spectral-amplitude (MMSE-LSA)
gain of the decision-directed a priori SNR (Ephraim & Malah); as in the two-step scheme of Plapous,
Marro & Scalart (2006) it gives a second a priori SNR (gain squared times the a posteriori SNR,
without the decision-directed one-frame lag at onsets) and a second LSA gain. The applied gain is the
geometric mean of the two, with a floor of ``-max_attenuation_db``.

The suppressor owns the analysis/synthesis STFT (sqrt-Hann, two frames long, one-frame hop), so it is
also where the echo canceller's residual-echo gain is applied: one transform pair per frame for both.
Latency: one frame (10 ms).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Complex, FftPlan, Index, Real, irfft, rfft

_XI_H1 = 31.6
"""Typical a priori SNR when speech is present (15 dB), for the noise tracker's presence probability."""
_NOISE_SMOOTHING = 0.9
_DD_ALPHA = 0.98
_XI_MIN = 10.0 ** (-25.0 / 10.0)
_STUCK_PRESENCE = 0.99
_SLOW_SMOOTHING = 0.99
"""Second averaging of the noise estimate (time constant 1 s at 10 ms frames)."""
# Indices into NoiseSuppressor.scalars.
_STARTED = 0
_FRAMES = 1
_NSCALARS = 2


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
        self.plan = FftPlan(1 << (2 * frame - 1).bit_length())
        bins = self.plan.bins
        self.window: Real = analysis_window(frame)
        self.gain_floor = 10.0 ** (-max_attenuation_db / 20.0)
        self.input: Real = np.zeros(2 * frame)
        self.overlap: Real = np.zeros(frame)
        self.time: Real = np.zeros(self.plan.size)
        self.spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.noise: Real = np.zeros(bins)
        self.noise_slow: Real = np.zeros(bins)
        self.presence: Real = np.zeros(bins)
        self.clean_prev: Real = np.zeros(bins)
        # per-bin a priori and a posteriori SNR of the last frame, read by the VAD
        self.prior_snr: Real = np.zeros(bins)
        self.post_snr: Real = np.zeros(bins)
        self.gain: Real = np.ones(bins)
        self.scalars: Real = np.zeros(_NSCALARS)

    def process(self, signal: Real, out: Real, extra_gain: Real) -> None:
        """Suppress noise in one frame of ``signal`` into ``out`` (delayed by one frame).

        ``extra_gain`` (one value per FFT bin, e.g. the residual-echo gain) multiplies the noise gain.
        """
        p = self.plan
        suppress_frame(
            signal, out, extra_gain, self.window, self.input, self.overlap, self.time, self.spectrum,
            self.noise, self.noise_slow, self.presence, self.clean_prev, self.prior_snr, self.post_snr, self.gain,
            self.scalars, self.gain_floor,
            p.work, p.reverse, p.twiddle, p.split,
        )  # fmt: skip

    @property
    def noise_power(self) -> float:
        """Estimated noise power per sample (normalized full scale 1.0, mean square)."""
        n = self.plan.size
        return float(2.0 * np.sum(self.noise_slow) / (n * float(np.sum(self.window**2))))


@nb.njit(cache=True, fastmath=True)
def _lsa_factor(v: float) -> float:
    """``exp(E1(v) / 2)``, the MMSE-LSA correction of the Wiener gain, to ~1e-5 relative.

    Below 1 it is ``exp(-euler_gamma/2) / sqrt(v) * exp(S(v)/2)`` with the series part ``S`` of E1
    (Abramowitz & Stegun 5.1.53); above 1, E1 (A&S 5.1.56) is small and its exponential a short
    Taylor series. One ``exp`` at most, none below 1.
    """
    if v < 1.0:
        v = max(v, 1e-10)
        half_series = 0.5 * v * (0.99999193 + v * (-0.24991055 + v * (0.05519968 + v * (-0.00976004 + v * 0.00107857))))
        h = half_series
        taylor = 1.0 + h * (1.0 + h * (0.5 + h * (1.0 / 6.0 + h * (1.0 / 24.0 + h / 120.0))))
        return 0.74930600 / math.sqrt(v) * taylor
    if v > 30.0:
        return 1.0
    h = 0.5 * math.exp(-v) / v * (v * v + 2.334733 * v + 0.250621) / (v * v + 3.330657 * v + 1.681534)
    return 1.0 + h * (1.0 + h * (0.5 + h / 6.0))


@nb.njit(cache=True, fastmath=True)
def suppress_frame(
    signal: Real, out: Real, extra_gain: Real, window: Real, buf: Real, overlap: Real, time: Real,
    spec: Complex, noise: Real, slow: Real, presence: Real, clean_prev: Real, prior_snr: Real, post_snr: Real,
    gain: Real, s: Real, gain_floor: float, work: Real, rev: Index, tw: Real, split: Complex,
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
    rfft(time, spec, work, rev, tw, split)

    started = s[_STARTED] != 0.0
    s[_STARTED] = 1.0
    frames = s[_FRAMES]
    s[_FRAMES] = frames + 1.0
    keep = min(_SLOW_SMOOTHING, 1.0 - 1.0 / (frames + 1.0))
    log_h1 = 1.0 + _XI_H1
    ratio_h1 = _XI_H1 / (1.0 + _XI_H1)
    for k in range(spec.shape[0]):
        y_pow = spec[k].real ** 2 + spec[k].imag ** 2 + 1e-20
        if not started:
            noise[k] = y_pow
        # noise tracker: a posteriori speech presence with a fixed typical speech SNR
        post = y_pow / noise[k]
        exponent = post * ratio_h1
        p_h1 = 1.0 if exponent > 30.0 else 1.0 / (1.0 + log_h1 * math.exp(-exponent))
        presence[k] = 0.9 * presence[k] + 0.1 * p_h1
        if presence[k] > _STUCK_PRESENCE:
            p_h1 = min(p_h1, _STUCK_PRESENCE)
        noise[k] = _NOISE_SMOOTHING * noise[k] + (1.0 - _NOISE_SMOOTHING) * (p_h1 * noise[k] + (1.0 - p_h1) * y_pow)
        slow[k] = keep * slow[k] + (1.0 - keep) * noise[k]
        # decision-directed a priori SNR, its LSA gain, then the two-step a priori SNR and its LSA gain
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
    # second step, in its own loop (two LSA factors in one loop body compile to much slower code)
    if gain_floor < 1.0:
        for k in range(spec.shape[0]):
            g1 = gain[k]
            xi2 = max(g1 * g1 * post_snr[k], _XI_MIN)
            g2 = min(xi2 / (1.0 + xi2) * _lsa_factor(post_snr[k] * xi2 / (1.0 + xi2)), 1.0)
            gain[k] = max(math.sqrt(g1 * g2), gain_floor)
    for k in range(spec.shape[0]):
        spec[k] *= gain[k] * extra_gain[k]

    irfft(spec, time, work, rev, tw, split)
    for i in range(frame):
        out[i] = overlap[i] + time[i] * window[i]
        overlap[i] = time[frame + i] * window[frame + i]
