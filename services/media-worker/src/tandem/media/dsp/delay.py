"""Bulk-delay estimation between the forwarded far-end audio and the echo in the near-end capture.

The estimator compares one-bit band spectra (a band is 1 when its energy is above its running mean) of
each far-end window against the current near-end window for every candidate lag, as WebRTC's binary
delay estimator does: the lag with the smallest smoothed Hamming distance wins. The far-end spectrum
covers the canceller's two-frame window; the near-end band powers of the last two frames are added so
that both sides span the same 20 ms and only the true lag lines them up (a one-frame near end matches
two lags equally). A new lag is adopted
only after it has won for ``confirm_frames`` consecutive frames, so the estimate re-locks within about
half a second of a delay jump and follows clock drift one frame at a time.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Complex, Index, Real

BANDS = 32
"""Number of one-bit bands; the band spectrum of one frame fits an int64."""

# Indices into DelayEstimator.scalars.
_POS = 0
_DELAY = 1
_CANDIDATE = 2
_CANDIDATE_RUN = 3
_LOCKED = 4
_CONFIDENCE = 5
_NSCALARS = 6

_SMOOTHING = 0.015
_MEAN_SMOOTHING = 0.03
_MARGIN_BITS = 1.0
_ACTIVE_POWER = 1e-7
"""Mean band power per bin below which a frame counts as silent (about -70 dBFS)."""


class DelayEstimator:
    """Per-call-direction state of the bulk-delay estimator.

    ``max_delay_frames`` is the largest lag searched, in 10 ms frames; ``band_edges`` are FFT bin
    indices (``BANDS + 1`` of them) of the spectra passed to :func:`update_delay`.
    """

    def __init__(self, max_delay_frames: int, band_edges: Index, confirm_frames: int = 25) -> None:
        if band_edges.shape[0] != BANDS + 1:
            raise ValueError("band_edges must hold BANDS + 1 bin indices")
        lags = max_delay_frames + 1
        self.band_edges = band_edges
        self.confirm_frames = confirm_frames
        self.far_bits: npt.NDArray[np.int64] = np.zeros(lags, dtype=np.int64)
        self.far_active: npt.NDArray[np.bool_] = np.zeros(lags, dtype=np.bool_)
        self.far_mean: Real = np.zeros(BANDS)
        self.near_mean: Real = np.zeros(BANDS)
        self.bands: Real = np.zeros(BANDS)
        self.near_previous: Real = np.zeros(BANDS)
        self.distance: Real = np.full(lags, BANDS / 2.0)
        self.scalars: Real = np.zeros(_NSCALARS)

    @property
    def delay_frames(self) -> int:
        """The locked bulk delay, in 10 ms frames."""
        return int(self.scalars[_DELAY])

    @property
    def locked(self) -> bool:
        """Whether a delay has been confirmed since the start."""
        return bool(self.scalars[_LOCKED])

    @property
    def confidence(self) -> float:
        """How far (in bits of 32) the best lag stands below the mean lag; above ~2 is a clear echo."""
        return float(self.scalars[_CONFIDENCE])


@nb.njit(cache=True)
def _popcount(value: np.int64) -> int:
    count = 0
    v = value
    while v:
        v &= v - 1
        count += 1
    return count


@nb.njit(cache=True)
def _band_powers(spectrum: Complex, edges: Index, bands: Real) -> None:
    """Mean power per bin of each band of ``spectrum``."""
    for b in range(BANDS):
        acc = 0.0
        for k in range(edges[b], edges[b + 1]):
            acc += spectrum[k].real ** 2 + spectrum[k].imag ** 2
        bands[b] = acc / (edges[b + 1] - edges[b])


@nb.njit(cache=True)
def _band_bits(bands: Real, mean: Real) -> tuple[np.int64, bool]:
    """One-bit band spectrum of the band powers against the running band means (which it updates)."""
    total = 0.0
    for b in range(BANDS):
        total += bands[b]
    active = total / BANDS > _ACTIVE_POWER
    bits = np.int64(0)
    if active:
        for b in range(BANDS):
            if bands[b] > mean[b]:
                bits |= np.int64(1) << b
            mean[b] += _MEAN_SMOOTHING * (bands[b] - mean[b])
    return bits, active


@nb.njit(cache=True)
def update_delay(
    far: Complex,
    near: Complex,
    edges: Index,
    far_bits: npt.NDArray[np.int64],
    far_active: npt.NDArray[np.bool_],
    far_mean: Real,
    near_mean: Real,
    bands: Real,
    near_previous: Real,
    distance: Real,
    scalars: Real,
    confirm_frames: int,
) -> int:
    """Feed one frame's far-end window and near-end frame spectra; return the locked delay in frames."""
    lags = far_bits.shape[0]
    pos = (int(scalars[_POS]) + 1) % lags
    scalars[_POS] = pos
    _band_powers(far, edges, bands)
    fbits, factive = _band_bits(bands, far_mean)
    far_bits[pos] = fbits
    far_active[pos] = factive
    _band_powers(near, edges, bands)
    for b in range(BANDS):
        latest = bands[b]
        bands[b] += near_previous[b]
        near_previous[b] = latest
    nbits, nactive = _band_bits(bands, near_mean)
    if not nactive:
        return int(scalars[_DELAY])
    updated = False
    for lag in range(lags):
        idx = (pos - lag) % lags
        if far_active[idx]:
            d = _popcount(far_bits[idx] ^ nbits)
            distance[lag] += _SMOOTHING * (d - distance[lag])
            updated = True
    if not updated:
        return int(scalars[_DELAY])
    best = int(np.argmin(distance))
    scalars[_CONFIDENCE] = np.mean(distance) - distance[best]
    if best == int(scalars[_CANDIDATE]):
        scalars[_CANDIDATE_RUN] += 1
    else:
        scalars[_CANDIDATE] = best
        scalars[_CANDIDATE_RUN] = 1
    current = int(scalars[_DELAY])
    if (
        best != current
        and scalars[_CANDIDATE_RUN] >= confirm_frames
        and (scalars[_LOCKED] == 0 or distance[best] < distance[current] - _MARGIN_BITS)
    ):
        scalars[_DELAY] = best
        scalars[_LOCKED] = 1
    elif best == current and scalars[_CANDIDATE_RUN] >= confirm_frames:
        scalars[_LOCKED] = 1
    return int(scalars[_DELAY])
