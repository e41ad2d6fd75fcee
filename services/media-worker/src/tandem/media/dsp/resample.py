"""Streaming 48 kHz <-> 16 kHz conversion with one polyphase FIR (Kaiser-windowed sinc).

Both directions keep their input history between frames, so a signal resampled frame by frame equals
the same signal resampled at once. Each direction delays by ``DELAY_48K`` samples at 48 kHz.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Real
from tandem.media.dsp._jit import FASTMATH

FACTOR = 3
TAPS = 121
"""Filter length at 48 kHz: 60 dB stopband from 8 kHz, passband to about 6.5 kHz."""
DELAY_48K = (TAPS - 1) // 2
"""Group delay of one conversion, in samples at 48 kHz (1.25 ms)."""


def lowpass_taps() -> Real:
    """The anti-aliasing / anti-imaging low-pass at 48 kHz, unit DC gain, cutoff 7.25 kHz."""
    n = np.arange(TAPS) - DELAY_48K
    cutoff = 7250.0 / 48000.0
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(TAPS, 5.65)
    return np.asarray(taps / np.sum(taps), dtype=np.float64)


class Decimator:
    """48 kHz -> 16 kHz for frames of ``frame_in`` samples (a multiple of 3)."""

    def __init__(self, frame_in: int = 480) -> None:
        self.taps = lowpass_taps()
        self.buffer: Real = np.zeros(TAPS - 1 + frame_in)

    def process(self, signal: Real, out: Real) -> None:
        """Decimate one frame of ``signal`` (48 kHz) into ``out`` (a third as long)."""
        decimate_frame(signal, out, self.buffer, self.taps)


class Interpolator:
    """16 kHz -> 48 kHz for frames of ``frame_in`` samples."""

    def __init__(self, frame_in: int = 160) -> None:
        taps = lowpass_taps() * FACTOR
        per_phase = -(-TAPS // FACTOR)
        # phases[r, i] = taps[3 (per_phase - 1 - i) + r], zero-padded: each phase reversed, so the
        # kernel runs forward through its history (and vectorizes)
        padded = np.zeros(per_phase * FACTOR)
        padded[:TAPS] = taps
        self.phases: Real = np.ascontiguousarray(padded.reshape(per_phase, FACTOR).T[:, ::-1])
        self.buffer: Real = np.zeros(per_phase - 1 + frame_in)

    def process(self, signal: Real, out: Real) -> None:
        """Interpolate one frame of ``signal`` (16 kHz) into ``out`` (three times as long)."""
        interpolate_frame(signal, out, self.buffer, self.phases)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def decimate_frame(signal: Real, out: Real, buf: Real, taps: Real) -> None:
    """``out[m] = sum_j taps[j] * x[3m - j]`` over the stream; ``buf`` carries the history. The taps
    are symmetric, so the sum runs forward through the history (and vectorizes)."""
    hist = taps.shape[0] - 1
    n_in = signal.shape[0]
    for i in range(n_in):
        buf[hist + i] = signal[i]
    for m in range(out.shape[0]):
        first = FACTOR * m
        acc = 0.0
        for j in range(taps.shape[0]):
            acc += taps[j] * buf[first + j]
        out[m] = acc
    for i in range(hist):
        buf[i] = buf[n_in + i]


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def interpolate_frame(signal: Real, out: Real, buf: Real, phases: Real) -> None:
    """``out[3m + r] = sum_i phases[r, i] * x[m - (per_phase - 1) + i]`` over the stream (the phases are
    stored reversed); ``buf`` carries the history."""
    per_phase = phases.shape[1]
    hist = per_phase - 1
    n_in = signal.shape[0]
    for i in range(n_in):
        buf[hist + i] = signal[i]
    for m in range(n_in):
        for r in range(FACTOR):
            acc = 0.0
            for i in range(per_phase):
                acc += phases[r, i] * buf[m + i]
            out[FACTOR * m + r] = acc
    for i in range(hist):
        buf[i] = buf[n_in + i]
