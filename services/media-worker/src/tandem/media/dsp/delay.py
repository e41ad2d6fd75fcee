"""Bulk-delay estimation between the forwarded far-end audio and the echo in the near-end capture.

The estimator compares one-bit band spectra (a band is 1 when its energy is above its running mean) of
each far-end window against the current near-end window for every candidate lag, as WebRTC's binary
delay estimator does: the lag with the smallest smoothed Hamming distance wins. The far-end spectrum
covers the canceller's two-frame window; the near-end band powers of the last two frames are added so
that both sides span the same 20 ms and only the true lag lines them up (a one-frame near end matches
two lags equally). A new lag is adopted
only after it has won for ``confirm_frames`` consecutive frames, so the estimate follows clock drift one
frame at a time without jitter.

A jump of the echo path (a new device route, a jitter buffer that grew) must be followed faster than
that: a second set of distances, smoothed over about five frames, proposes a lag (``fast_ready``) when
it wins them by ``_FAST_MARGIN_BITS`` over the locked lag for ``_FAST_CONFIRM_FRAMES`` frames in a row
(its winner may move by up to ``_FAST_JITTER_FRAMES`` from frame to frame: the canceller's probe
searches a few frames either side),
lies more than ``_FAST_MIN_STEP`` frames away and matches nearly as well as the locked lag did over
the slow distances' memory (within ``-_FAST_MATCH_BITS``; the slow memory forgets a moved path too
slowly to wait for). For these distances a lag whose far end was silent while the capture carries
sound counts as a random match: it explains nothing, which is how the locked lag looks right after a
jump that lands between two of its far end's words. The canceller verifies a proposal (its
converged filter must cancel the echo there) and then adopts it with :func:`adopt_lag`; band
patterns alone are fooled too often by a near-end talker.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Complex, Index, Real
from tandem.media.dsp._jit import FASTMATH, Record

BANDS = 32
"""Number of one-bit bands; the band spectrum of one frame fits an int64."""

DELAY_STATE = np.dtype(
    [
        ("pos", np.int64),  # ring position of the newest far-end band spectrum
        ("delay", np.int64),  # the locked lag, frames
        ("candidate", np.int64),  # the lag that won the last frames...
        ("candidate_run", np.int64),  # ...for this many frames in a row
        ("fast_candidate", np.int64),  # the same for the fast distances
        ("fast_run", np.int64),
        ("fast_ready", np.bool_),  # the fast distances propose fast_candidate
        ("locked", np.bool_),  # a lag has been confirmed since the start
        ("confidence", np.float64),  # mean distance minus the best, bits
    ]
)
"""The estimator's scalar state (one record)."""

_SMOOTHING = 0.015
_MEAN_SMOOTHING = 0.03
_MARGIN_BITS = 1.0
_FAST_SMOOTHING = 0.2
_FAST_MARGIN_BITS = 4.0
_FAST_CONFIRM_FRAMES = 4
_FAST_MIN_STEP = 2
_FAST_JITTER_FRAMES = 2
_FAST_MATCH_BITS = -5.0
"""Negative: a proposal may match up to 5 bits worse than the locked lag's slow distance."""
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
        self.fast: Real = np.full(lags, BANDS / 2.0)
        self.state = np.zeros(1, dtype=DELAY_STATE)

    @property
    def delay_frames(self) -> int:
        """The locked bulk delay, in 10 ms frames."""
        return int(self.state[0]["delay"])

    @property
    def locked(self) -> bool:
        """Whether a delay has been confirmed since the start."""
        return bool(self.state[0]["locked"])

    @property
    def confidence(self) -> float:
        """How far (in bits of 32) the best lag stands below the mean lag; above ~2 is a clear echo."""
        return float(self.state[0]["confidence"])


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _popcount(value: np.int64) -> int:
    count = 0
    v = value
    while v:
        v &= v - 1
        count += 1
    return count


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _band_powers(spectrum: Complex, edges: Index, bands: Real) -> None:
    """Mean power per bin of each band of ``spectrum``."""
    for b in range(BANDS):
        acc = 0.0
        for k in range(edges[b], edges[b + 1]):
            acc += spectrum[k].real ** 2 + spectrum[k].imag ** 2
        bands[b] = acc / (edges[b + 1] - edges[b])


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
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


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _run(best: int, candidate: int, run: int) -> int:
    """Frames in a row that ``best`` has won, given the last winner ``candidate`` and its run."""
    return run + 1 if best == candidate else 1


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _fast_proposal(fast: Real, distance: Real, st: Record) -> None:
    """Propose the fast distances' lag when it has clearly and steadily beaten the locked one and
    matches nearly as well as the locked lag did over the slow distances' memory."""
    best = int(np.argmin(fast))
    st.fast_run = st.fast_run + 1 if abs(best - st.fast_candidate) <= _FAST_JITTER_FRAMES else 1
    st.fast_candidate = best
    current = int(st.delay)
    st.fast_ready = (
        st.locked
        and abs(best - current) > _FAST_MIN_STEP
        and st.fast_run >= _FAST_CONFIRM_FRAMES
        and fast[best] < fast[current] - _FAST_MARGIN_BITS
        and fast[best] < distance[current] - _FAST_MATCH_BITS
    )


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def adopt_lag(lag: int, distance: Real, fast: Real, state: npt.NDArray[np.void], confirm_frames: int) -> None:
    """Lock ``lag`` (frames), verified by the canceller; the slow distances restart from the fast ones
    when it is a jump."""
    st = state[0]
    if lag != st.delay:
        distance[:] = fast
    st.delay = lag
    st.candidate = lag
    st.candidate_run = confirm_frames
    st.locked = True
    st.fast_ready = False


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
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
    fast: Real,
    state: npt.NDArray[np.void],
    confirm_frames: int,
) -> int:
    """Feed one frame's far-end window and near-end frame spectra; return the locked delay in frames."""
    st = state[0]
    lags = far_bits.shape[0]
    pos = (st.pos + 1) % lags
    st.pos = pos
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
        return int(st.delay)
    updated = False
    for lag in range(lags):
        idx = (pos - lag) % lags
        if far_active[idx]:
            d = _popcount(far_bits[idx] ^ nbits)
            distance[lag] += _SMOOTHING * (d - distance[lag])
            fast[lag] += _FAST_SMOOTHING * (d - fast[lag])
            updated = True
        else:  # a silent far end explains no sound: for the jump detector, as bad as a random match
            fast[lag] += _FAST_SMOOTHING * (BANDS / 2.0 - fast[lag])
    if not updated:
        return int(st.delay)
    _fast_proposal(fast, distance, st)
    best = int(np.argmin(distance))
    st.confidence = np.mean(distance) - distance[best]
    st.candidate_run = _run(best, st.candidate, st.candidate_run)
    st.candidate = best
    current = int(st.delay)
    if (
        best != current
        and st.candidate_run >= confirm_frames
        and (not st.locked or distance[best] < distance[current] - _MARGIN_BITS)
    ):
        st.delay = best
        st.locked = True
    elif best == current and st.candidate_run >= confirm_frames:
        st.locked = True
    return int(st.delay)
