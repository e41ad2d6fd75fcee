"""NumPy reference implementations of the DSP kernels, written vectorized and independently of the
Numba loops, for the equivalence tests. Each takes whole signals (batch) and returns whole outputs."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tandem.media.dsp.noise import analysis_window, exp1
from tandem.media.dsp.resample import FACTOR, lowpass_taps

Real = npt.NDArray[np.float64]


def decimate(x: Real) -> Real:
    """Batch 48 kHz -> 16 kHz: full convolution with the low-pass, every third sample."""
    return np.asarray(np.convolve(x, lowpass_taps())[: x.shape[0]][::FACTOR])


def interpolate(x: Real) -> Real:
    """Batch 16 kHz -> 48 kHz: zero-stuffing and convolution with three times the low-pass."""
    stuffed = np.zeros(x.shape[0] * FACTOR)
    stuffed[::FACTOR] = x
    return np.asarray(np.convolve(stuffed, FACTOR * lowpass_taps())[: stuffed.shape[0]])


def lsa_gain(prior: Real, post: Real) -> Real:
    """MMSE log-spectral-amplitude gain for a priori SNR ``prior`` and a posteriori SNR ``post``."""
    return np.asarray(prior / (1.0 + prior) * np.exp(0.5 * exp1(post * prior / (1.0 + prior))))


def suppress(x: Real, frame: int, gain_floor: float) -> tuple[Real, Real, Real]:
    """Batch noise suppressor; returns (output, last a priori SNR, last a posteriori SNR)."""
    window = analysis_window(frame)
    n_fft = 2 * frame
    bins = n_fft // 2 + 1
    regen_from = math.ceil(1000.0 * n_fft / (100 * frame))
    xi_h1, xi_min = 31.6, 10**-2.5
    noise = smoothed = sub_min = np.zeros(bins)
    slow = np.zeros(bins)
    presence = np.zeros(bins)
    clean_prev = np.zeros(bins)
    past_minima = np.zeros((4, bins))
    floor_min = np.zeros(bins)
    changed_frames, bins_changed = 0, 0
    prior = post = np.zeros(bins)
    padded = np.concatenate([np.zeros(frame), x])
    out = np.zeros(x.shape[0])
    overlap = np.zeros(frame)
    for t in range(x.shape[0] // frame):
        spec = np.fft.rfft(padded[t * frame : t * frame + 2 * frame] * window, n_fft)
        power = np.abs(spec) ** 2 + 1e-20
        if t == 0:
            noise = smoothed = sub_min = power.copy()
        # speech-presence noise tracker, minimum-statistics floor, change detector, second average
        gamma = power / noise
        p_h1 = 1.0 / (1.0 + (1.0 + xi_h1) * np.exp(-np.minimum(gamma * xi_h1 / (1.0 + xi_h1), 50.0)))
        presence = 0.9 * presence + 0.1 * p_h1
        p_h1 = np.where(presence > 0.99, np.minimum(p_h1, 0.99), p_h1)
        noise = 0.9 * noise + 0.1 * (p_h1 * noise + (1.0 - p_h1) * power)
        smoothed = 0.7 * smoothed + 0.3 * power
        if t > 0 and t % 40 == 0:
            past_minima[(t // 40) % 4] = sub_min
            floor_min = past_minima.min(axis=0)
            sub_min = smoothed.copy()
        else:
            sub_min = np.minimum(sub_min, smoothed)
        noise = np.maximum(noise, 2.0 * np.minimum(floor_min, sub_min))
        changed_frames = changed_frames + 1 if bins_changed > 0.7 * bins else 0
        keep = min(0.99, 1.0 - 1.0 / (t + 1))
        if changed_frames >= 10:
            keep = min(keep, 0.9)
        slow = keep * slow + (1.0 - keep) * noise
        bins_changed = max(int(np.count_nonzero(noise > 1.6 * slow)), int(np.count_nonzero(noise * 1.6 < slow)))
        # decision-directed LSA gain, the two-step gain, harmonic regeneration above 1 kHz
        post = power / slow
        prior = np.maximum(0.98 * clean_prev / slow + 0.02 * np.maximum(post - 1.0, 0.0), xi_min)
        if gain_floor < 1.0:
            g1 = np.clip(lsa_gain(prior, post), gain_floor, 1.0)
            g2 = np.minimum(lsa_gain(np.maximum(g1**2 * post, xi_min), post), 1.0)
            gain = np.maximum(np.sqrt(g1 * g2), gain_floor)
            regenerated = np.abs(np.fft.rfft(np.maximum(np.fft.irfft(spec * gain, n_fft), 0.0), n_fft)) ** 2
            g = gain[regen_from:]
            kept = g**3 * np.abs(spec[regen_from:]) ** 2
            prior3 = np.maximum((kept + (1.0 - g) * regenerated[regen_from:]) / slow[regen_from:], xi_min)
            gain[regen_from:] = np.sqrt(g * np.clip(lsa_gain(prior3, post[regen_from:]), gain_floor, 1.0))
        else:
            g1 = gain = np.ones(bins)
        clean_prev = g1**2 * power
        y = np.fft.irfft(spec * gain, n_fft)[: 2 * frame] * window
        out[t * frame : (t + 1) * frame] = overlap + y[:frame]
        overlap = y[frame:]
    return out, prior, post


def vad_scores(prior: Real, post: Real, first: int, last: int) -> float:
    """Mean log likelihood ratio over bins ``first:last``."""
    xi = prior[first:last]
    return float(np.mean(post[first:last] * xi / (1.0 + xi) - np.log1p(xi)))


def gain_control(
    x: Real, speech: npt.NDArray[np.bool_], frame: int, target: float, slew: float, ceiling: float,
    max_gain: float, min_gain: float,
) -> Real:  # fmt: skip
    """Batch AGC and limiter, frame-recursive on level, gain and limiter state."""
    level, gain, limit = target, 1.0, 1.0
    ramp = np.arange(1, frame + 1) / frame
    out = np.zeros_like(x)
    for t in range(x.shape[0] // frame):
        seg = x[t * frame : (t + 1) * frame]
        if speech[t]:
            level += 0.05 * (float(np.mean(seg**2)) - level)
        desired = np.clip(np.sqrt(target / (level + 1e-12)), min_gain, max_gain)
        end = np.clip(desired, gain / slew, gain * slew)
        y = seg * (gain + (end - gain) * ramp)
        gain = end
        wanted = min(1.0, ceiling / (np.max(np.abs(y)) + 1e-12))
        limit = wanted if wanted < limit else limit + 0.05 * (wanted - limit)
        out[t * frame : (t + 1) * frame] = np.clip(y * limit, -1.0, 1.0)
    return out


def partitioned_echo(weights: npt.NDArray[np.float32], spectra: npt.NDArray[np.float32], rows: list[int]) -> Real:
    """Overlap-save output spectrum of a partitioned filter: sum_p W_p X_rows[p] (complex)."""
    w = weights[0].astype(np.float64) + 1j * weights[1].astype(np.float64)
    x = spectra[0, rows].astype(np.float64) + 1j * spectra[1, rows].astype(np.float64)
    return np.asarray(np.sum(w * x, axis=0))


def band_bits(power: Real, edges: npt.NDArray[np.int64], mean: Real) -> int:
    """One-bit band spectrum: bit b set when band b's mean power exceeds ``mean[b]``."""
    bands = np.array([power[edges[b] : edges[b + 1]].mean() for b in range(edges.shape[0] - 1)])
    return int(sum(1 << b for b in np.flatnonzero(bands > mean)))
