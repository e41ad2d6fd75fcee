"""Acoustic echo cancellation against the far-end audio the worker forwarded.

A partitioned-block frequency-domain adaptive filter (the MDF structure of Soo & Pang, with the
learning-rate control of Valin, "On adjusting the learning rate in frequency domain echo cancellation
with double-talk", 2007) runs behind a bulk-delay estimator (:mod:`tandem.media.dsp.delay`): the
filter only has to model the room (``tail_ms``), the estimator finds where in the last
``max_delay_ms`` the echo sits.

Placement. The bulk-delay estimator matches band-energy patterns, so it locks onto where most of the
echo's energy is, which in a reverberant room is later than the direct path. It only places the
filter coarsely (with a margin of ``_COARSE_MARGIN_FRAMES`` before its lag). Once the filter has
converged, its own impulse response tells where the direct path is, to a fraction of a sample: the
first partition whose peak tap is within ``_ONSET_FRACTION`` of the largest, its peak refined by a
parabola. The window is then moved (keeping the taps) to start one to two frames before that onset,
which leaves the rest of the window to the room's tail.

Drift. The drift needs no converged filter: the capture's cross-spectrum with the reference at the
first lags of the filter's window is accumulated over half a second of far-end sound (the capture
under a Hann window, the speech band only), and the strongest path's delay is read from its
phase-only correlation (GCC-PHAT), refined to a fraction of a sample by Newton steps on the
band-limited correlation. Against the far end's own clock that delay moves by the clock drift between
the two ends; a regression over the last ~5 s of measurements gives the drift, which is compensated
by delaying the reference by a growing fractional delay (a windowed-sinc interpolator), so the filter
sees a still room. The slope alone, a few ppm off, would let the echo slip by a fraction of a sample
within seconds, which costs the filter its fit, so the compensation is also pulled towards where the
echo was when the drift was first measured (a phase lock). When the added delay passes a whole frame
the filter's lag takes the frame and the reference's delay drops by it, without disturbing the
filter.

Two filters run side by side: the background filter always adapts, the foreground filter produces
the output and only takes over the background's coefficients when they demonstrably cancel more;
a background that diverged in double talk is reset from the foreground. The adaptation step per bin is
the estimated share of residual echo in the error, so a near-end talker freezes adaptation instead of
corrupting the filter, and it is normalized by the far-end power the whole window saw, so a loud
burst after a quiet spell cannot blow the filter up. A canceller whose state still goes non-finite
(hostile input) resets itself and passes the capture through for that frame; it never raises.

Delay jumps. The estimator's fast distances propose a new lag within about a tenth of a second of a
jump (see :mod:`tandem.media.dsp.delay`); the canceller verifies it by probing: the last converged
filter (kept as the room's shape, ``room_weights``) is run at the bases around the proposal for a few
frames, and the base that cancels is taken by both filters at once (the room did not change, only
the delay). Until then, a frame whose cancelled output would carry more energy than the capture is
passed through uncancelled, and while the far end talks the residual-echo suppressor holds such
frames, and the next ``_MOVED_FRAMES``, at its floor, so the echo of a moved path is not heard while
the filter is placed again. So it does for frames whose output is anti-correlated with the echo
estimate (the estimate mostly missing from the capture) two in a row, and the hold is renewed while
that lasts, though the smoothed ERLE that first judged the filter converged has fallen. A near-end
talker over a converged filter keeps the error below the capture and uncorrelated with the estimate,
so double talk triggers neither.

A lag jump of the estimator away from a filter that has converged is not taken on the estimator's
word: a near-end talker can shift its band patterns (in double talk it once moved a good filter to a
lag 300 ms off, and the echo came through for the rest of the call). The probe verifies it instead;
only when the output has not cancelled 5 dB for ``_UNVERIFIED_FRAMES`` frames with far-end sound
(the room itself changed, so there is no shape to probe with) is the background placed at the
estimator's lag as before.

A residual-echo suppressor then computes a spectral gain from the leakage estimate, the late
reverberation beyond the window and, per bin, what the linear model leaves unexplained (a
loudspeaker's harmonics, reverberation it misses), applied by the noise suppressor's STFT (see
:mod:`tandem.media.dsp.noise`). Where the far end talks alone (the linear filter removes nine tenths
of the capture) that estimate is counted several times over, so what is left of the echo goes under
the noise floor; a near-end talker makes the error stand out of the capture and brings the plain
estimate back in the same frame, so double talk keeps the near-end voice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Complex, FftPlan, FftTables, Index, Real, Single, irfft, rfft
from tandem.media.dsp._jit import FASTMATH, Record
from tandem.media.dsp.delay import BANDS, DelayEstimator, adopt_lag, update_delay

ECHO_STATE = np.dtype(
    [
        ("frames", np.int64),  # frames processed
        ("pos", np.int64),  # ring row of the newest far-end spectrum
        ("bg_base", np.int64),  # far-end lag of the background filter's partition 0, frames
        ("fg_base", np.int64),  # the same for the foreground filter
        ("lag", np.int64),  # the estimator's lag the background was last placed for, frames
        ("lead", np.int64),  # how far the window last started before the estimator's lag, frames
        ("grace", np.int64),  # frames left before a newly placed background may be backed out
        ("probe", np.bool_),  # a delay jump's exact lag is being probed (see _probe_jump)
        ("probe_seen", np.int64),  # far-end-active frames probed so far
        ("probe_lo", np.int64),  # the first candidate base of the probe, frames
        ("probe_near", np.float64),  # the capture's energy over the probed frames
        ("probe_lag", np.int64),  # the estimator's lag the probe is for, frames
        ("probe_hold", np.int64),  # frames before a rejected proposal may be probed again
        ("deferred", np.bool_),  # the estimator's lag jumped away from a converged filter, unverified
        ("uncancelled", np.int64),  # far-end frames with sound since the output last cancelled 5 dB
        ("missing", np.int64),  # frames in a row whose echo estimate was missing from the capture
        ("moved", np.int64),  # frames left of full residual-echo suppression after the path moved
        ("constrain", np.int64),  # next partition to constrain (round robin)
        ("sweep", np.int64),  # partitions constrained since the last coarse placement
        ("adapted", np.bool_),  # the filter has left its initial fixed-step phase
        ("sum_adapt", np.float64),  # adaptation done in that phase
        ("leak", np.float64),  # leakage: share of the echo estimate's power left in the error
        ("pey", np.float64),  # smoothed error/echo power covariance (leak regression)
        ("pyy", np.float64),  # smoothed echo power variance (leak regression)
        ("davg1", np.float64),  # two-path comparison: fast and slow error difference means...
        ("davg2", np.float64),
        ("dvar1", np.float64),  # ...and their variances
        ("dvar2", np.float64),
        ("dc_near", np.float64),  # DC removal states
        ("dc_far", np.float64),
        ("erle_num", np.float64),  # smoothed captured energy in far-end-active frames
        ("erle_den", np.float64),  # smoothed output energy in the same frames
        ("echo_ratio", np.float64),  # smoothed echo-estimate / captured energy ratio
        ("direct", np.float64),  # direct-path onset in filter coordinates, samples (see module doc)
        ("direct_valid", np.bool_),  # the filter has converged enough to be measured
        ("direct_off", np.int64),  # onsets in a row measured away from it
        ("offset", np.float64),  # fractional delay added to the reference for drift, samples
        ("drift", np.float64),  # estimated drift, samples per sample (ppm x 1e-6)
        ("pull", np.float64),  # correction added to it so the compensation keeps its lock, the same units
        ("lock", np.float64),  # the echo's delay behind the compensated reference being kept, samples
        ("locked", np.bool_),  # the lock is set
        ("cross_frames", np.int64),  # far-end-active frames in the cross-spectrum window (drift)
        ("cross_time", np.float64),  # the sums of their frame numbers and drift compensations
        ("cross_offset", np.float64),
        ("cross_base", np.int64),  # the background's base the window's rows are taken at, frames
        ("reg_n", np.float64),  # drift regression: weighted count, sums of t, p, t^2, t*p, p^2
        ("reg_t", np.float64),
        ("reg_p", np.float64),
        ("reg_tt", np.float64),
        ("reg_tp", np.float64),
        ("reg_pp", np.float64),
        ("reg_t0", np.float64),  # its time origin, frames
        ("outliers", np.int64),  # drift delay measurements in a row off the regression's line
        ("resets", np.int64),  # times the canceller reset itself after going non-finite
    ]
)
"""The canceller's scalar state (one record)."""

_DC_POLE = 0.995
_MIN_LEAK = 0.005
_VAR1_UPDATE = 0.5
_VAR2_UPDATE = 0.25
_VAR_BACKTRACK = 4.0
_ERLE_SMOOTHING = 0.02
_FAR_ACTIVE_POWER = 1e-7
"""Mean squared sample (normalized full scale 1.0) above which the far end counts as talking."""
_COARSE_MARGIN_FRAMES = 3
"""A filter placed by the bulk-delay estimator starts this many frames before its lag (its late
bias in reverberant rooms is up to ~20 ms, and it may also be a frame early)."""
_FINE_MARGIN = 1.0
"""A filter placed by its own direct-path onset starts between this and one more frame before it."""
_DRIFT_FRAMES = 2
"""A step of the bulk-delay estimate up to this many frames keeps the filter's absolute taps."""
_TRUST_FRAMES = 4
"""While the direct path is measured, an estimator lag within this many frames of it is taken for
the estimator's own jitter (its band patterns move with drift and reverberation), not a jump."""
_PLACEMENT_GRACE_FRAMES = 50
"""A background filter placed at a new lag is not compared for backing out for this many frames: it
starts from taps that belonged to another lag and needs time to converge before it can be judged."""
_PROBE_SPREAD = 4
"""After a delay jump the converged filter is tried at this many frames either side of its placement
(the estimator's lag may be off by a few frames after a jump; the room's shape is the same)..."""
_PROBE_FRAMES = 4
"""...over this many frames with far-end activity..."""
_PROBE_NEAR_POWER = 1e-6
"""...where the capture carries sound (mean squared sample above -60 dBFS)..."""
_PROBE_ACCEPT = 0.3
"""...and the best base is taken by both filters when its error has at most this share of the
capture's energy (5 dB of cancellation: the echo path moved, the room did not)."""
_PROBE_HOLD_FRAMES = 50
"""A proposal of the fast delay distances that the probe rejected is not probed again for this long."""
_UNVERIFIED_FRAMES = 150
"""A lag jump of the bulk-delay estimator away from a converged filter is taken only when a probe
confirms it, or once the output has not cancelled 5 dB in this many frames with far-end sound (a
near-end talker can mislead the estimator's band patterns, never the probe; a room that changed
too leaves nothing to probe)."""
_ROOM_ERLE = 8.0
"""The foreground's coefficients are kept as the room's shape while its smoothed ERLE exceeds this
power ratio (9 dB); a delay jump drops the ERLE below it within a few frames."""
_ADDING_ENERGY = 1.5
"""A frame whose cancelled output would carry this many times the capture's energy is passed through
uncancelled (a near-end talker over a good filter keeps the error below the capture)."""
_MISSING_ECHO = 0.5
"""Or a frame whose cancelled output is anti-correlated with the echo estimate by this share of the
estimate's energy, and with at least this normalized correlation: the estimate is mostly missing
from the capture. A near-end talker over a good filter adds an error uncorrelated with the estimate
(and a converged filter's error is orthogonal to it), so double talk does not look like this; an
echo path that moved does, frame after frame..."""
_MISSING_FRAMES = 2
"""...so it takes this many such frames in a row (a near-end onset can correlate with the estimate by
chance for one)."""
_MOVED_FRAMES = 20
"""When such a frame comes while the far end talks over a converged filter, the echo path has moved:
the residual-echo suppressor holds the capture at its floor for this many frames after the last such
frame, or until the probe has placed the filter again."""
_ONSET_FRACTION = 0.5
"""The direct path is the first partition whose peak tap reaches this share of the largest peak."""
_MEASURE_ERLE = 2.0
"""The filter's impulse response is trusted once its ERLE exceeds this power ratio (3 dB)."""
_CROSS_ROWS = 5
"""Lags (frames from the background's base) whose cross-spectrum with the capture is accumulated for
the drift: the direct path lies one to three frames into the window."""
_CROSS_FRAMES = 50
"""Far-end-active frames per delay measurement for the drift (half a second of far-end sound)."""
_CROSS_COHERENCE = 0.3
"""Smallest phase coherence at the correlation peak for a delay measurement to be used (a near-end
talker or noise over the echo lowers it)."""
_CROSS_FLOOR = 1e-20
"""Cross-spectrum magnitude below which a bin counts as silent, far under any audible echo's (the
capture decaying to denormals after the echo stops would otherwise give bins of 1e-45, whose phase
the fast-math division loses)."""
_NEWTON_STEPS = 4
"""Newton steps refining the correlation peak to a fraction of a sample."""
_LOCK_S = 2.0
"""Time constant with which the drift compensation takes up the echo's slip against it, seconds."""
_DRIFT_FORGET = 0.9
"""Per-measurement forgetting of the drift regression (one measurement per half second of far-end
sound: a memory of about 5 s)."""
_DRIFT_MIN_SPREAD_S = 0.6
"""The regression's time spread (standard deviation) needed before its slope is used (about 2 s of
measurements)."""
_OUTLIER_SAMPLES = 6.0
"""A delay measurement this far off the regression's line, or a direct-path onset this far from the
last (another reflection won, or a near-end talker), is not used..."""
_OUTLIERS_TO_RESTART = 5
"""...unless this many in a row are: then the path itself has moved (and the regression restarts)."""
_MAX_DRIFT = 1e-3
"""Largest drift believed (1000 ppm; two devices' clocks are within a few hundred)."""
_DRIFT_FIT_SAMPLES = 1.0
"""Largest RMS distance of the measurements from the regression's line for its slope to be taken as
the drift, samples (a clean drift fits within a few tenths; a delay that stepped within the
regression's memory, as a capture buffer does under network jitter, does not fit a line at all)."""
_MIN_COMPENSATED_DRIFT = 10e-6
"""Drift below this (10 ppm, 0.16 samples a second at 16 kHz) is left to the adaptive filter."""
_HALF_TAPS = 8
"""Half the length of the reference's fractional-delay interpolator; also the reference's look-ahead
delay, samples."""
_DIVERGED = 1e6
"""Frame energies above this many frames of full scale mean the filter has diverged."""
_MAX_LATE_DECAY = 0.9
"""Largest per-frame energy decay of the late reverberation model (RT60 of about 1.3 s)."""
_UNEXPLAINED_SMOOTHING = 0.02
_UNEXPLAINED_MAX = 0.1
"""Largest share of the aligned far-end power the suppressor assumes the linear model leaves unexplained..."""
_UNEXPLAINED_OVERSUBTRACT = 3.0
"""...and how many times over it counts it (the share is a mean; the harmonics come in bursts)."""
_FAR_ALONE_OVERSUBTRACT = 5.0
"""In a frame where the far end talks alone (the linear filter removes nine tenths of the capture, so
any near-end talker is 10 dB under the echo), the residual-echo estimate is counted this many times
over: the suppressor then holds what is left of the echo under the noise floor, as WebRTC's AEC3 does,
while a near-end talker (the error no longer far under the capture) is judged on the plain estimate."""


@dataclass(frozen=True, slots=True)
class EchoReport:
    """What the canceller sees on its call direction.

    ``delay_ms`` is the echo's delay behind the reference: its direct path once the filter has found it
    (to a fraction of a sample), before that the bulk-delay estimate (10 ms steps); ``drift_ppm`` the
    estimated clock drift (positive: the echo arrives later and later); ``erle_db`` the smoothed echo
    return loss enhancement of the linear filter over frames with far-end activity; ``echo_present``
    whether the echo estimate carries at least a tenth (-10 dB) of the captured energy.
    """

    echo_present: bool
    delay_ms: float
    erle_db: float
    drift_ppm: float = 0.0


class EchoCanceller:
    """Per-call-direction echo canceller state; all arrays are allocated here, none per frame.

    ``sample_rate`` in Hz (16000 or 48000; 10 ms frames of ``sample_rate // 100`` samples),
    ``tail_ms`` the room response the adaptive filter models, ``max_delay_ms`` the bulk delay range
    searched, ``suppression_floor_db`` the lowest residual-echo gain (0 turns the suppressor off).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        tail_ms: int = 200,
        max_delay_ms: int = 500,
        suppression_floor_db: float = -40.0,
    ) -> None:
        frame = sample_rate // 100
        fft_size = 2 * frame
        self.sample_rate = sample_rate
        self.frame = frame
        self.partitions = max(1, math.ceil(tail_ms / 10))
        self.plan = FftPlan(fft_size)
        bins = self.plan.bins
        max_delay_frames = math.ceil(max_delay_ms / 10) + _COARSE_MARGIN_FRAMES
        self.history = max_delay_frames + self.partitions + 2
        hz_per_bin = sample_rate / fft_size
        edges = np.round(np.geomspace(250.0, 4000.0, BANDS + 1) / hz_per_bin).astype(np.int64)
        self.delay = DelayEstimator(max_delay_frames, np.maximum.accumulate(edges + np.arange(BANDS + 1)))
        self.far_history: Real = np.zeros(3 * frame + 2 * _HALF_TAPS)
        self.interpolator: Real = np.zeros(2 * _HALF_TAPS)
        self.far_window: Real = np.zeros(fft_size)
        # Spectra and weights are split into real and imaginary float32 planes so the partition
        # loops vectorize; axis 0 is real/imaginary.
        self.far_spectra: Single = np.zeros((2, self.history, bins), dtype=np.float32)
        self.near_spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.bg_weights: Single = np.zeros((2, self.partitions, bins), dtype=np.float32)
        self.fg_weights: Single = np.zeros((2, self.partitions, bins), dtype=np.float32)
        # the foreground's last converged coefficients: the room's shape, kept for a delay jump
        self.room_weights: Single = np.zeros((2, self.partitions, bins), dtype=np.float32)
        self.accumulator: Single = np.zeros((2, bins), dtype=np.float32)
        self.spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.time: Real = np.zeros(fft_size)
        self.near: Real = np.zeros(frame)
        self.bg_echo: Real = np.zeros(frame)
        self.fg_echo: Real = np.zeros(frame)
        self.probe_echo: Real = np.zeros(frame)
        self.probe_error: Real = np.zeros(2 * _PROBE_SPREAD)
        # per bin: smoothed aligned far-end power, step size, error and echo powers (leak
        # regression), the suppressor's error and echo powers and its gain
        self.power: Real = np.zeros(bins)
        self.step: Real = np.zeros(bins)
        self.err_smooth: Real = np.zeros(bins)
        self.echo_smooth: Real = np.zeros(bins)
        self.res_error: Real = np.zeros(bins)
        self.res_echo: Real = np.zeros(bins)
        self.late_echo: Real = np.zeros(bins)
        # per bin, smoothed over frames where the far end talks alone: the error the linear model does
        # not explain and the aligned far-end power (rows 0 and 1)
        self.unexplained: Real = np.zeros((2, bins))
        self.residual_gain: Real = np.ones(bins)
        # per lag at the start of the filter's window and bin: the capture-reference cross-spectrum
        # accumulated for the drift measurement
        self.cross: Single = np.zeros((2, _CROSS_ROWS, bins), dtype=np.float32)
        # per partition: step share, and the peak tap of its last constraint (value, position)
        self.prop: Real = np.zeros(self.partitions)
        # (peak, position) x partition x 1, so that the filters' partition shifts move them too
        self.taps: Real = np.zeros((2, self.partitions, 1))
        self.tap_peak: Real = self.taps[0, :, 0]
        self.tap_index: Real = self.taps[1, :, 0]
        self.suppression_floor = 10.0 ** (suppression_floor_db / 20.0)
        self.state = np.zeros(1, dtype=ECHO_STATE)
        _reset(self.state[0], self.bg_weights, self.fg_weights, self.room_weights, self.taps, 0)
        d = self.delay
        p = self.plan
        # the kernel's arguments after the frames and the state, grouped by what they are, built once
        self._arrays = (
            (self.far_history, self.interpolator, self.far_window, self.far_spectra, self.near_spectrum),
            (self.bg_weights, self.fg_weights, self.room_weights, self.accumulator, self.spectrum, self.time),
            (self.near, self.bg_echo, self.fg_echo, self.probe_echo, self.probe_error),
            (self.power, self.step, self.err_smooth, self.echo_smooth, self.res_error, self.res_echo,
             self.late_echo, self.unexplained, self.residual_gain, self.cross),
            (self.prop, self.taps),
            (p.work, p.order, p.twiddle, p.split),
            (d.band_edges, d.far_bits, d.far_active, d.far_mean, d.near_mean, d.bands, d.near_previous,
             d.distance, d.fast, d.state),
            d.confirm_frames,
        )  # fmt: skip

    def process(self, near: Real, far: Real, out: Real) -> None:
        """Cancel echo of ``far`` (the forwarded frame) from ``near`` (the captured frame) into ``out``.

        All three are float64 frames of ``frame`` samples at normalized full scale 1.0; ``out`` gets
        the linear canceller's output and :attr:`residual_gain` the suppressor's gain per FFT bin.
        Never raises on any input: non-finite samples count as silence.
        """
        cancel_frame(near, far, out, self.state, self.suppression_floor, *self._arrays)

    @property
    def report(self) -> EchoReport:
        """The current echo state of this direction."""
        s = self.state[0]
        erle = 10.0 * math.log10((float(s["erle_num"]) + 1e-12) / (float(s["erle_den"]) + 1e-12))
        if s["direct_valid"]:
            delay_ms = 1000.0 * (float(s["direct"]) + float(s["offset"]) + _HALF_TAPS) / self.sample_rate
        else:
            delay_ms = 10.0 * self.delay.delay_frames
        return EchoReport(
            echo_present=bool(s["echo_ratio"] > 0.1),
            delay_ms=delay_ms,
            erle_db=erle,
            drift_ppm=1e6 * float(s["drift"]),
        )


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _reset(s: Record, bg_w: Single, fg_w: Single, room_w: Single, taps: Real, base: int) -> None:
    """Start over with empty filters at ``base`` (construction, and after going non-finite)."""
    bg_w[:, :, :] = 0.0
    fg_w[:, :, :] = 0.0
    room_w[:, :, :] = 0.0
    taps[:, :, :] = 0.0
    s.bg_base = s.fg_base = base
    s.lag = -1
    s.lead = _COARSE_MARGIN_FRAMES
    s.grace = 0
    s.probe = False
    s.deferred = False
    s.uncancelled = 0
    s.sweep = 0
    s.adapted = False
    s.sum_adapt = 0.0
    s.leak = 1.0
    s.pey = 0.0
    s.pyy = 1.0
    s.davg1 = s.davg2 = s.dvar1 = s.dvar2 = 0.0
    s.direct_valid = False
    s.cross_base = -1  # the cross-spectrum window starts over
    _forget_drift_measurements(s)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _forget_drift_measurements(s: Record) -> None:
    s.reg_n = s.reg_t = s.reg_p = s.reg_tt = s.reg_tp = s.reg_pp = 0.0
    s.reg_t0 = float(s.frames)
    s.outliers = 0
    s.pull = 0.0
    s.locked = False


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _shift_partitions(weights: Single | Real, shift: int) -> None:
    """Keep the filter's absolute taps after its bulk lag grew by ``shift`` frames (w[p] <- w[p+shift])."""
    parts = weights.shape[1]
    order = range(parts) if shift > 0 else range(parts - 1, -1, -1)
    for q in order:
        src = q + shift
        for c in range(2):
            for k in range(weights.shape[2]):
                weights[c, q, k] = weights[c, src, k] if 0 <= src < parts else 0.0


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _partition_shares(weights: Single, prop: Real) -> None:
    """Step share of each partition: its coefficient norm plus a tenth of the largest, summing to 0.99."""
    top = 1e-9
    for p in range(weights.shape[1]):
        acc = np.float32(0.0)
        for k in range(weights.shape[2]):
            acc += weights[0, p, k] * weights[0, p, k] + weights[1, p, k] * weights[1, p, k]
        prop[p] = math.sqrt(acc)
        top = max(top, prop[p])
    total = 0.0
    for p in range(weights.shape[1]):
        prop[p] += 0.1 * top
        total += prop[p]
    for p in range(weights.shape[1]):
        prop[p] *= 0.99 / total


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _filter_output(
    weights: Single, spectra: Single, newest: int, base: int, acc: Single, out_spec: Complex,
    time: Real, echo: Real, work: Real, order: Index, tw: Real, split: Complex,
) -> None:  # fmt: skip
    """Echo estimate (last ``len(echo)`` samples of the overlap-save output) of one filter."""
    history = spectra.shape[1]
    bins = acc.shape[1]
    acc[:, :] = 0.0
    for p in range(weights.shape[1]):
        row = (newest - base - p) % history
        for k in range(bins):
            wr = weights[0, p, k]
            wi = weights[1, p, k]
            xr = spectra[0, row, k]
            xi = spectra[1, row, k]
            acc[0, k] += wr * xr - wi * xi
            acc[1, k] += wr * xi + wi * xr
    for k in range(bins):
        out_spec[k] = complex(acc[0, k], acc[1, k])
    irfft(out_spec, time, work, order, tw, split)
    n = time.shape[0]
    frame = echo.shape[0]
    for i in range(frame):
        echo[i] = time[n - frame + i]


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _padded_spectrum(
    frame_signal: Real, out: Complex, time: Real, work: Real, order: Index, tw: Real, split: Complex
) -> None:
    """Spectrum of ``frame_signal`` placed at the end of an otherwise zero FFT window."""
    n = time.shape[0]
    frame = frame_signal.shape[0]
    time[: n - frame] = 0.0
    for i in range(frame):
        time[n - frame + i] = frame_signal[i]
    rfft(time, out, work, order, tw, split)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _finite_or_zero(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _take_near(near_in: Real, near: Real, s: Record) -> None:
    """DC-free capture frame (non-finite samples count as silence)."""
    dc = s.dc_near
    for i in range(near_in.shape[0]):
        x = _finite_or_zero(near_in[i])
        dc = _DC_POLE * dc + (1.0 - _DC_POLE) * x
        near[i] = x - dc
    s.dc_near = dc


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _interpolator_taps(fraction: float, taps: Real) -> None:
    """Blackman-windowed sinc taps delaying by ``fraction`` of a sample (unit DC gain)."""
    half = taps.shape[0] // 2
    total = 0.0
    for m in range(taps.shape[0]):
        x = (m - half + 1) + fraction
        value = 1.0 if abs(x) < 1e-9 else math.sin(math.pi * x) / (math.pi * x)
        u = x / half
        window = 0.42 + 0.5 * math.cos(math.pi * u) + 0.08 * math.cos(2.0 * math.pi * u) if abs(u) < 1.0 else 0.0
        taps[m] = value * window
        total += taps[m]
    for m in range(taps.shape[0]):
        taps[m] /= total


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _compensated_drift(s: Record) -> float:
    """The delay the reference's compensation adds per sample."""
    return s.drift + s.pull if abs(s.drift) >= _MIN_COMPENSATED_DRIFT else 0.0


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _take_far(far_in: Real, history: Real, taps: Real, window: Real, s: Record) -> int:
    """Slide the DC-free far end into ``history`` and build the reference window: the last two frames,
    delayed by the look-ahead plus the drift compensation ``s.offset``. Returns the frames the
    filter's lag must take from (+1) or give to (-1) the offset when it left [0, frame)."""
    frame = far_in.shape[0]
    n = history.shape[0]
    for i in range(n - frame):
        history[i] = history[i + frame]
    dc = s.dc_far
    for i in range(frame):
        x = _finite_or_zero(far_in[i])
        dc = _DC_POLE * dc + (1.0 - _DC_POLE) * x
        history[n - frame + i] = x - dc
    s.dc_far = dc
    moved = 0
    offset = s.offset + _compensated_drift(s) * frame
    if offset >= frame:
        offset -= frame
        moved = 1
    elif offset < 0.0:
        if min(s.bg_base, s.fg_base) >= 1:
            offset += frame
            moved = -1
        else:
            offset = 0.0
    s.offset = offset
    whole = math.floor(offset)
    fraction = offset - whole
    half = taps.shape[0] // 2
    size = window.shape[0]
    if fraction == 0.0:
        for j in range(size):
            window[j] = history[n - size + j - half - whole]
        return moved
    _interpolator_taps(fraction, taps)
    for j in range(size):
        first = n - size + j - half - whole - half + 1
        acc = 0.0
        for m in range(taps.shape[0]):
            acc += taps[m] * history[first + m]
        window[j] = acc
    return moved


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _store_far_spectrum(spec: Complex, far_spectra: Single, s: Record, moved: int) -> int:
    """Store the reference window's spectrum as the newest ring row; return the row.

    When the drift compensation hands a frame to the filter's lag (``moved`` = +1) the row is stored
    twice, so that the older rows keep their lag; when it takes one back (-1) the newest row is
    overwritten instead. The filters' bases and the measured direct path move by that frame."""
    history = far_spectra.shape[1]
    steps = 1 + moved
    newest = int((s.pos + steps) % history)
    for step in range(max(steps, 1)):
        row = (s.pos + 1 + step) % history if steps > 0 else newest
        for k in range(spec.shape[0]):
            far_spectra[0, row, k] = spec[k].real
            far_spectra[1, row, k] = spec[k].imag
    s.pos = newest
    if moved != 0:
        s.bg_base += moved
        s.fg_base += moved
        s.lag = s.lag + moved if s.lag >= 0 else s.lag
        s.direct += moved * (spec.shape[0] - 1)
        s.lock += moved * (spec.shape[0] - 1)
    return newest


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _place_filters(lag: int, s: Record, bg_w: Single, fg_w: Single, taps: Real) -> None:
    """Place the filters for the estimator's ``lag`` (frames) and the measured direct path.

    A lag far from the measured direct path is a delay jump: the background alone is placed as far
    before the new lag as the window last was before the old one (the room is the same, so its shape
    fits again at once; the coarse margin before anything was measured), keeping its shape relative to
    the lag (or its absolute taps after a small step), and the two-path logic either promotes it or
    backs it out. While the direct path is measured and both filters agree, both are moved to start a
    frame or two before it."""
    frame = bg_w.shape[2] - 1
    if s.grace > 0:
        s.grace -= 1
    if lag != s.lag:
        s.lag = lag
        trusted = s.direct_valid and abs(lag * frame - s.direct) <= _TRUST_FRAMES * frame
        s.deferred = not trusted and s.direct_valid and s.uncancelled < _UNVERIFIED_FRAMES
        if s.deferred:  # a converged filter is moved by a probe that cancels, not by the estimate alone
            _start_probe(s, lag, max(0, lag - s.lead))
        elif not trusted:
            _move_background(lag, s, bg_w, taps)
        return
    if s.deferred and s.uncancelled >= _UNVERIFIED_FRAMES:
        s.deferred = False
        _move_background(lag, s, bg_w, taps)
        return
    if s.direct_valid and s.bg_base == s.fg_base:
        target = max(0, math.floor((s.direct - _FINE_MARGIN * frame) / frame))
        shift = target - s.bg_base
        if shift != 0 and abs(shift) < bg_w.shape[1]:
            _shift_partitions(bg_w, shift)
            _shift_partitions(fg_w, shift)
            _shift_partitions(taps, shift)
            s.bg_base = s.fg_base = target
        s.lead = min(max(s.lag - s.bg_base, 0), 2 * _COARSE_MARGIN_FRAMES)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _move_background(lag: int, s: Record, bg_w: Single, taps: Real) -> None:
    """A delay jump to ``lag``: the background alone is placed as far before it as the window last was
    before the old lag, keeping its shape (or its absolute taps after a small step)."""
    old = s.bg_base
    base = max(0, lag - s.lead)
    if abs(base - old) <= _DRIFT_FRAMES:
        _shift_partitions(bg_w, base - old)
        _shift_partitions(taps, base - old)
    else:
        taps[0, :, :] = 0.0
    s.bg_base = base
    s.grace = _PLACEMENT_GRACE_FRAMES
    _start_probe(s, lag, base)
    s.direct_valid = False
    s.sweep = 0
    _forget_drift_measurements(s)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _start_probe(s: Record, lag: int, base: int) -> None:
    s.probe = True
    s.probe_seen = 0
    s.probe_lag = lag
    s.probe_lo = max(0, base - _PROBE_SPREAD)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _probe_jump(
    near: Real, room_w: Single, fg_w: Single, bg_w: Single, far_spectra: Single, newest: int, acc: Single,
    spec: Complex, time: Real, echo: Real, errors: Real, fft: FftTables, s: Record,
) -> bool:  # fmt: skip
    """After a delay jump: the last converged filter (the room's shape, from before the jump) at each
    candidate base, its error energy summed over frames with far-end activity and sound in the capture;
    the best base, if it cancels, is taken by both filters with those coefficients. Returns whether
    the probe ended so."""
    work, order, tw, split = fft
    if s.probe_seen == 0:
        errors[:] = 0.0
        s.probe_near = 0.0
    frame = near.shape[0]
    top = far_spectra.shape[1] - fg_w.shape[1] - 1
    for c in range(errors.shape[0]):
        _filter_output(
            room_w, far_spectra, newest, min(s.probe_lo + c, top), acc, spec, time, echo, work, order, tw, split
        )
        for i in range(frame):
            errors[c] += (near[i] - echo[i]) ** 2
    for i in range(frame):
        s.probe_near += near[i] * near[i]
    s.probe_seen += 1
    if s.probe_seen < _PROBE_FRAMES:
        return False
    s.probe = False
    best = int(np.argmin(errors))
    # a best base at the edge of the candidates may only be nearest to one beyond them (the proposal
    # was off): not taken
    inside = (best > 0 or s.probe_lo == 0) and (best < errors.shape[0] - 1 or s.probe_lo + best >= top)
    if inside and errors[best] < _PROBE_ACCEPT * s.probe_near:
        bg_w[:, :, :] = room_w
        fg_w[:, :, :] = room_w
        s.moved = 0
        s.bg_base = s.fg_base = min(s.probe_lo + best, top)
        s.davg1 = s.davg2 = s.dvar1 = s.dvar2 = 0.0
        return True
    s.probe_hold = _PROBE_HOLD_FRAMES
    return False


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _compare_paths(
    near: Real, bg_echo: Real, fg_echo: Real, bg_w: Single, fg_w: Single, s: Record
) -> tuple[float, float, float, bool]:
    """Two-path logic: promote a better background, back out a background that diverged.

    Returns the foreground's and the background's error energies, the capture's energy, and whether
    the filters' output is usable (finite and not diverged)."""
    frame = near.shape[0]
    sff = 0.0
    see = 0.0
    dbf = 0.0
    sdd = 0.0
    for i in range(frame):
        ef = near[i] - fg_echo[i]
        eb = near[i] - bg_echo[i]
        sff += ef * ef
        see += eb * eb
        dbf += (ef - eb) * (ef - eb)
        sdd += near[i] * near[i]
    healthy = math.isfinite(sff + see + dbf) and sff < _DIVERGED * frame and see < _DIVERGED * frame
    if not healthy:
        return sff, see, sdd, False
    tiny = 1e-12 * frame
    sff += tiny
    see += tiny
    dbf += tiny
    base = s.bg_base
    fg_base = s.fg_base
    diff = sff - see
    s.davg1 = 0.6 * s.davg1 + 0.4 * diff
    s.davg2 = 0.85 * s.davg2 + 0.15 * diff
    s.dvar1 = 0.36 * s.dvar1 + 0.16 * sff * dbf
    s.dvar2 = 0.7225 * s.dvar2 + 0.0225 * sff * dbf
    if (
        diff * abs(diff) > sff * dbf
        or s.davg1 * abs(s.davg1) > _VAR1_UPDATE * s.dvar1
        or s.davg2 * abs(s.davg2) > _VAR2_UPDATE * s.dvar2
    ):
        fg_w[:, :, :] = bg_w
        s.fg_base = base
        fg_echo[:] = bg_echo
        sff = see
        s.davg1 = s.davg2 = s.dvar1 = s.dvar2 = 0.0
    elif s.grace == 0 and (
        -diff * abs(diff) > _VAR_BACKTRACK * sff * dbf
        or -s.davg1 * abs(s.davg1) > _VAR_BACKTRACK * s.dvar1
        or -s.davg2 * abs(s.davg2) > _VAR_BACKTRACK * s.dvar2
    ):
        bg_w[:, :, :] = fg_w
        if fg_base != base:
            s.lag = -1  # the estimator's lag is tried again, after another grace period
        s.bg_base = fg_base
        bg_echo[:] = fg_echo
        see = sff
        s.davg1 = s.davg2 = s.dvar1 = s.dvar2 = 0.0
        s.sweep = 0  # the taps measured were the discarded background's
    return sff, see, sdd, True


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _leak_estimate(
    spec: Complex, near_spec: Complex, syy: float, see: float, err_smooth: Real, echo_smooth: Real,
    res_error: Real, res_echo: Real, step: Real, s: Record,
) -> float:  # fmt: skip
    """Leakage (share of the echo estimate's power left in the error) by regression of error on echo
    power per bin, and the suppressor's smoothed powers; ``step`` gets |Y|^2 per bin. Returns the
    echo estimate's spectral sum."""
    pey = 0.0
    pyy = 0.0
    echo_sum = 0.0
    for k in range(spec.shape[0]):
        e_pow = spec[k].real ** 2 + spec[k].imag ** 2
        y = near_spec[k] - spec[k]
        y_pow = y.real * y.real + y.imag * y.imag
        eh = e_pow - err_smooth[k]
        yh = y_pow - echo_smooth[k]
        pey += eh * yh
        pyy += yh * yh
        err_smooth[k] += 0.01 * (e_pow - err_smooth[k])
        echo_smooth[k] += 0.01 * (y_pow - echo_smooth[k])
        res_echo[k] = 0.6 * res_echo[k] + 0.4 * y_pow
        res_error[k] = 0.6 * res_error[k] + 0.4 * e_pow
        echo_sum += y_pow
        step[k] = y_pow
    pyy = math.sqrt(pyy)
    pey = pey / (pyy + 1e-30)
    alpha = min(0.02 * syy, 0.005 * see) / see
    s.pey = (1.0 - alpha) * s.pey + alpha * pey
    s.pyy = max((1.0 - alpha) * s.pyy + alpha * pyy, 1e-30)
    s.pey = min(max(s.pey, _MIN_LEAK * s.pyy), s.pyy)
    s.leak = s.pey / s.pyy
    return echo_sum


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _late_reverberation(tap_peak: Real, res_echo: Real, late: Real) -> None:
    """The room's reverberation beyond the filter's window, per bin: each frame's echo estimate
    continues past the window with the energy share and the decay of the window's last partitions
    (from the partitions' peak taps), so ``late`` follows ``d * (late + share * |Y|^2)``."""
    parts = tap_peak.shape[0]
    quarter = max(1, parts // 4)
    total = 1e-30
    for p in range(parts):
        total += tap_peak[p] * tap_peak[p]
    last = 0.0
    before = 1e-30
    for p in range(parts - quarter, parts):
        last += tap_peak[p] * tap_peak[p]
    for p in range(parts - 2 * quarter, parts - quarter):
        before += tap_peak[p] * tap_peak[p]
    decay = min(max(last / before, 0.0), 1.0) ** (1.0 / quarter)  # energy, per frame
    decay = min(decay, _MAX_LATE_DECAY)
    share = tap_peak[parts - 1] * tap_peak[parts - 1] / total
    for k in range(late.shape[0]):
        late[k] = decay * (late[k] + share * res_echo[k])


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _residual_gain(
    res_error: Real, res_echo: Real, late: Real, power: Real, unexplained: Real, res_gain: Real, floor: float,
    far_only: bool, s: Record,
) -> None:  # fmt: skip
    """Residual-echo suppressor gain per bin. The echo share of the error is the leakage times the echo
    estimate's power, plus the late reverberation beyond the window, plus what the linear model does
    not explain (a loudspeaker's harmonics, reverberation the filter misses): per bin, the share of
    the aligned far-end power left in the error beyond the first two, learned in frames where the far
    end talks alone over a converged filter, counted ``_UNEXPLAINED_OVERSUBTRACT`` times over."""
    if far_only:
        for k in range(res_gain.shape[0]):
            excess = max(res_error[k] - 2.0 * s.leak * res_echo[k] - late[k], 0.0)
            unexplained[0, k] += _UNEXPLAINED_SMOOTHING * (excess - unexplained[0, k])
            unexplained[1, k] += _UNEXPLAINED_SMOOTHING * (power[k] - unexplained[1, k])
    over = _FAR_ALONE_OVERSUBTRACT if far_only else 1.0
    res_leak = min(2.0 * over * s.leak, 1.0)
    for k in range(res_gain.shape[0]):
        share = min(unexplained[0, k] / (unexplained[1, k] + 1e-20), _UNEXPLAINED_MAX)
        echo = res_leak * res_echo[k] + late[k] + over * _UNEXPLAINED_OVERSUBTRACT * share * power[k]
        g = max(1.0 - echo / (res_error[k] + 1e-20), floor)
        # fast attack, slower release so echo tails do not pump through
        res_gain[k] = g if g < res_gain[k] else 0.5 * res_gain[k] + 0.5 * g


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _step_sizes(
    spec: Complex, step: Real, power: Real, far_spectra: Single, newest: int, base: int, prop: Real,
    acc: Single, sxx: float, see: float, syy: float, sey: float, s: Record,
) -> None:  # fmt: skip
    """Adaptation step per bin: in the initial phase a fixed rate, then the estimated residual-echo
    share of the error (Valin's learning-rate control), both normalized by the far-end power the
    filter's window saw (the larger of its smoothed power and the step-share-weighted power of all
    partitions' rows, so a loud burst after a quiet spell cannot overshoot)."""
    bins = spec.shape[0]
    history = far_spectra.shape[1]
    n2 = 4.0 * (bins - 1) * (bins - 1)
    parts = prop.shape[0]
    if not s.adapted and s.sum_adapt > parts and s.leak * syy > 0.03 * syy:
        s.adapted = True
    rate = 0.0
    rer = 0.0
    if s.adapted:
        rer = (1e-4 * sxx + 3.0 * s.leak * syy) / see
        rer = min(max(rer, sey * sey / (1e-30 + see * syy)), 0.5)
    else:
        rate = min(0.25 * sxx, 0.25 * see) / see
        s.sum_adapt += rate
    seen = acc[0]  # scratch: the step-share-weighted far-end power of the window, per bin
    seen[:] = 0.0
    for p in range(parts):
        row = (newest - base - p) % history
        share = np.float32(prop[p] / 0.99)
        for k in range(bins):
            seen[k] += share * (far_spectra[0, row, k] ** 2 + far_spectra[1, row, k] ** 2)
    for k in range(bins):
        norm = max(power[k], float(seen[k])) + 1e-10 * n2
        if s.adapted:
            e_pow = spec[k].real ** 2 + spec[k].imag ** 2 + 1e-20
            r = min(s.leak * step[k], 0.5 * e_pow)
            r = 0.7 * r + 0.3 * rer * e_pow
            step[k] = r / (e_pow * norm)
        else:
            step[k] = rate / norm


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _adapt(
    spec: Complex, step: Real, bg_w: Single, far_spectra: Single, newest: int, base: int, acc: Single,
    prop: Real,
) -> None:  # fmt: skip
    """Gradient step on every partition: the proportionate share of the step times conj(X) * E."""
    bins = spec.shape[0]
    history = far_spectra.shape[1]
    for k in range(bins):
        acc[0, k] = step[k] * spec[k].real
        acc[1, k] = step[k] * spec[k].imag
    for p in range(bg_w.shape[1]):
        row = (newest - base - p) % history
        share = np.float32(prop[p])
        for k in range(bins):
            xr = far_spectra[0, row, k]
            xi = far_spectra[1, row, k]
            bg_w[0, p, k] += share * (xr * acc[0, k] + xi * acc[1, k])
            bg_w[1, p, k] += share * (xr * acc[1, k] - xi * acc[0, k])


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _constrain_and_measure(
    bg_w: Single, spec: Complex, time: Real, tap_peak: Real, tap_index: Real, s: Record, fft: FftTables
) -> None:
    """Constrain one partition (round robin) to a frame of taps, and note its peak tap and where it is
    (refined by a parabola through the neighbouring taps)."""
    work, order, tw, split = fft
    frame = bg_w.shape[2] - 1
    c = s.constrain
    s.constrain = (c + 1) % bg_w.shape[1]
    for k in range(spec.shape[0]):
        spec[k] = complex(bg_w[0, c, k], bg_w[1, c, k])
    irfft(spec, time, work, order, tw, split)
    time[frame:] = 0.0
    peak = 0.0
    at = 0
    for i in range(frame):
        if abs(time[i]) > peak:
            peak = abs(time[i])
            at = i
    position = float(at)
    if 0 < at < frame - 1:
        left = abs(time[at - 1])
        right = abs(time[at + 1])
        curve = left - 2.0 * peak + right
        if curve < 0.0:
            position += 0.5 * (left - right) / curve
    tap_peak[c] = peak
    tap_index[c] = position
    s.sweep += 1
    rfft(time, spec, work, order, tw, split)
    for k in range(spec.shape[0]):
        bg_w[0, c, k] = spec[k].real
        bg_w[1, c, k] = spec[k].imag


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _track_direct_path(tap_peak: Real, tap_index: Real, s: Record, frame: int) -> None:
    """After each full sweep of a converged filter: the direct path's onset (filter coordinates,
    samples)."""
    parts = tap_peak.shape[0]
    if s.sweep < parts or s.constrain != 0:
        return
    converged = s.erle_num > _MEASURE_ERLE * s.erle_den and s.bg_base == s.fg_base and s.grace == 0
    if not converged:
        return
    top = 0.0
    for p in range(parts):
        top = max(top, tap_peak[p])
    if top <= 0.0:
        return
    first = 0
    while tap_peak[first] < _ONSET_FRACTION * top:
        first += 1
    direct = (s.bg_base + first) * frame + tap_index[first]
    if s.direct_valid and abs(direct - s.direct) > _OUTLIER_SAMPLES:
        s.direct_off += 1
        if s.direct_off < _OUTLIERS_TO_RESTART:
            return
    s.direct_off = 0
    s.direct = direct
    s.direct_valid = True


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _speech_band(edges: Index, bins: int) -> tuple[int, int]:
    """The bins (first, last) the cross-spectra are accumulated over: the delay estimator's band."""
    return max(edges[0], 2), min(edges[edges.shape[0] - 1], bins - 3)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _accumulate_cross(
    near_spec: Complex, far_spectra: Single, newest: int, cross: Single, edges: Index, windowed: Single, s: Record
) -> None:
    """Add this frame's cross-spectra, in the speech band, of the capture under a Hann window with the
    reference at the first ``_CROSS_ROWS`` lags of the background's window (``windowed`` is scratch). A
    window whose base moved starts over."""
    if s.bg_base != s.cross_base:
        cross[:, :, :] = 0.0
        s.cross_frames = 0
        s.cross_time = s.cross_offset = 0.0
        s.cross_base = s.bg_base
    history = far_spectra.shape[1]
    lo, hi = _speech_band(edges, near_spec.shape[0])
    for k in range(lo, hi + 1):
        # the frame is the FFT window's second half: a Hann window over it is a three-tap kernel
        y = 0.5 * near_spec[k] - 0.25 * (near_spec[k - 2] + near_spec[k + 2])
        windowed[0, k] = y.real
        windowed[1, k] = y.imag
    for j in range(cross.shape[1]):
        row = (newest - s.bg_base - j) % history
        for k in range(lo, hi + 1):
            yr = windowed[0, k]
            yi = windowed[1, k]
            fr = far_spectra[0, row, k]
            fi = far_spectra[1, row, k]
            cross[0, j, k] += yr * fr + yi * fi
            cross[1, j, k] += yi * fr - yr * fi
    s.cross_frames += 1
    s.cross_time += s.frames
    s.cross_offset += s.offset


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _phase_only(cross: Single, row: int, lo: int, hi: int, spec: Complex) -> None:
    """``spec[lo..hi]`` = the accumulated cross-spectrum of ``row`` with unit magnitude (PHAT)."""
    for k in range(lo, hi + 1):
        m = math.hypot(cross[0, row, k], cross[1, row, k])
        spec[k] = complex(cross[0, row, k] / m, cross[1, row, k] / m) if m > _CROSS_FLOOR else 0.0


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _correlation(spec: Complex, lo: int, hi: int, lag: float) -> tuple[float, float, float]:
    """The band-limited correlation of the phase-only cross-spectrum ``spec`` at ``lag`` (samples),
    with its first and second derivatives, each as a sum over the band's bins."""
    frame = spec.shape[0] - 1
    w = math.pi / frame
    rotation = complex(math.cos(w * lag), math.sin(w * lag))
    phase = complex(math.cos(w * lag * lo), math.sin(w * lag * lo))
    c = d1 = d2 = 0.0
    for k in range(lo, hi + 1):
        v = spec[k] * phase
        c += v.real
        d1 -= w * k * v.imag
        d2 -= (w * k) ** 2 * v.real
        phase *= rotation
    return c, d1, d2


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _cross_delay(cross: Single, edges: Index, spec: Complex, time: Real, fft: FftTables) -> tuple[float, float]:
    """The strongest path in the accumulated cross-spectra (GCC-PHAT): its delay (filter coordinates
    from the window's base, samples, refined by Newton steps on the band-limited correlation) and the
    phase coherence there (1: every bin agrees)."""
    work, order, tw, split = fft
    frame = spec.shape[0] - 1
    lo, hi = _speech_band(edges, spec.shape[0])
    best = -1.0
    best_row = 0
    best_lag = 0
    for j in range(cross.shape[1]):
        spec[:] = 0.0
        _phase_only(cross, j, lo, hi, spec)
        irfft(spec, time, work, order, tw, split)
        for i in range(frame + 1):  # the lags at which the capture lies wholly in the reference window
            if time[i] > best:
                best = time[i]
                best_row = j
                best_lag = i
    _phase_only(cross, best_row, lo, hi, spec)
    lag = float(best_lag)
    for _ in range(_NEWTON_STEPS):
        _, d1, d2 = _correlation(spec, lo, hi, lag)
        if d2 >= 0.0:
            break
        lag -= min(max(d1 / d2, -1.0), 1.0)
    coherence, _, _ = _correlation(spec, lo, hi, lag)
    return best_row * frame + lag, coherence / (hi + 1 - lo)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _drift_line(s: Record) -> tuple[float, float, float, float]:
    """The drift regression's line: mean time (s), mean delay, time variance and slope (samples per
    second)."""
    mean_t = s.reg_t / s.reg_n
    mean_p = s.reg_p / s.reg_n
    spread = s.reg_tt / s.reg_n - mean_t * mean_t
    return mean_t, mean_p, spread, (s.reg_tp / s.reg_n - mean_t * mean_p) / max(spread, 1e-6)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _measure_drift(cross: Single, edges: Index, spec: Complex, time: Real, fft: FftTables, s: Record) -> None:
    """Once a window has ``_CROSS_FRAMES`` far-end-active frames: the strongest path's delay against the
    far end's own clock, and from a regression of it on time, the drift."""
    if s.cross_frames < _CROSS_FRAMES:
        return
    frame = spec.shape[0] - 1
    delay, coherence = _cross_delay(cross, edges, spec, time, fft)
    t = (s.cross_time / s.cross_frames - s.reg_t0) * 0.01  # seconds
    # against the far end's clock: the reference at this delay was compensated that much earlier
    delay += s.cross_base * frame
    p = delay + s.cross_offset / s.cross_frames - _compensated_drift(s) * delay
    cross[:, :, :] = 0.0
    s.cross_frames = 0
    s.cross_time = s.cross_offset = 0.0
    if not coherence >= _CROSS_COHERENCE:  # NaN included
        return
    if s.reg_n >= 3.0:
        mean_t, mean_p, _, slope = _drift_line(s)
        if abs(p - (mean_p + slope * (t - mean_t))) > _OUTLIER_SAMPLES:
            s.outliers += 1
            if s.outliers < _OUTLIERS_TO_RESTART:
                return
            _forget_drift_measurements(s)
            t = 0.0
    s.outliers = 0
    s.reg_n = _DRIFT_FORGET * s.reg_n + 1.0
    s.reg_t = _DRIFT_FORGET * s.reg_t + t
    s.reg_p = _DRIFT_FORGET * s.reg_p + p
    s.reg_tt = _DRIFT_FORGET * s.reg_tt + t * t
    s.reg_tp = _DRIFT_FORGET * s.reg_tp + t * p
    s.reg_pp = _DRIFT_FORGET * s.reg_pp + p * p
    mean_t, mean_p, spread, slope = _drift_line(s)
    if spread >= _DRIFT_MIN_SPREAD_S * _DRIFT_MIN_SPREAD_S:
        residual = s.reg_pp / s.reg_n - mean_p * mean_p - slope * slope * spread
        if residual > _DRIFT_FIT_SAMPLES * _DRIFT_FIT_SAMPLES or abs(slope) > _MAX_DRIFT * 100.0 * frame:
            return  # not a line: the delay stepped within the regression's memory (jitter, a jump)
        s.drift = slope / (100.0 * frame)
        # keep the echo where it was behind the compensated reference: the slope alone, a few ppm
        # off, lets it slip by a fraction of a sample within seconds, which costs the filter its fit
        now = mean_p + slope * ((s.frames - s.reg_t0) * 0.01 - mean_t)
        if not s.locked:
            s.lock = now - s.offset
            s.locked = True
        s.pull = (now - s.lock - s.offset) / (_LOCK_S * 100.0 * frame)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _meter(near: Real, out: Real, sdd: float, echo_sum: float, far_active: bool, s: Record) -> None:
    """Smoothed ERLE and echo share over frames where the far end talks."""
    if not far_active:
        return
    frame = near.shape[0]
    n = 2 * frame
    sout = 0.0
    for i in range(frame):
        sout += out[i] * out[i]
    s.erle_num += _ERLE_SMOOTHING * (sdd - s.erle_num)
    s.erle_den += _ERLE_SMOOTHING * (sout - s.erle_den)
    ratio = min(2.0 * echo_sum / (sdd * n + 1e-20), 1.0)
    s.echo_ratio += _ERLE_SMOOTHING * (ratio - s.echo_ratio)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def cancel_frame(
    near_in: Real, far_in: Real, out: Real, state: npt.NDArray[np.void], floor: float,
    far: tuple[Real, Real, Real, Single, Complex],
    filters: tuple[Single, Single, Single, Single, Complex, Real],
    frames: tuple[Real, Real, Real, Real, Real],
    per_bin: tuple[Real, Real, Real, Real, Real, Real, Real, Real, Real, Single],
    per_partition: tuple[Real, Real], fft: FftTables, delay: tuple[Any, ...], confirm: int,
) -> None:  # fmt: skip
    """One 10 ms frame of the canceller; see :meth:`EchoCanceller.process`."""
    far_history, interpolator, far_window, far_spectra, near_spec = far
    bg_w, fg_w, room_w, acc, spec, time = filters
    near, bg_echo, fg_echo, probe_echo, probe_error = frames
    power, step, err_smooth, echo_smooth, res_error, res_echo, late, unexplained, res_gain, cross = per_bin
    prop, taps = per_partition
    tap_peak = taps[0, :, 0]
    tap_index = taps[1, :, 0]
    work, order, tw, split = fft
    edges, far_bits, far_active_lags, far_mean, near_mean, bands, near_previous, distance, fast, delay_state = delay
    s = state[0]
    s.frames += 1
    frame = near_in.shape[0]
    n = far_window.shape[0]
    history = far_spectra.shape[1]
    bins = spec.shape[0]

    # Inputs: DC-free capture, drift-compensated reference window and its spectrum, bulk delay.
    _take_near(near_in, near, s)
    moved = _take_far(far_in, far_history, interpolator, far_window, s)
    rfft(far_window, spec, work, order, tw, split)
    newest = _store_far_spectrum(spec, far_spectra, s, moved)
    _padded_spectrum(near, near_spec, time, work, order, tw, split)
    lag = update_delay(
        spec, near_spec, edges, far_bits, far_active_lags, far_mean, near_mean, bands, near_previous,
        distance, fast, delay_state, confirm,
    )  # fmt: skip
    _place_filters(lag, s, bg_w, fg_w, taps)
    if s.probe_hold > 0:
        s.probe_hold -= 1
    elif delay_state[0].fast_ready and not s.probe:
        proposed = int(delay_state[0].fast_candidate)
        _start_probe(s, proposed, max(0, proposed - s.lead))
    base = s.bg_base

    # Aligned far-end energy (Parseval on the newest aligned window, scaled to one frame).
    aligned = (newest - base) % history
    sxx = 0.0
    for k in range(bins):
        x_pow = far_spectra[0, aligned, k] ** 2 + far_spectra[1, aligned, k] ** 2
        sxx += x_pow if (k == 0 or k == bins - 1) else 2.0 * x_pow
        power[k] = 0.98 * power[k] + 0.02 * x_pow
    sxx *= frame / (n * n)
    far_active = sxx > _FAR_ACTIVE_POWER * frame
    if moved != 0:
        s.probe_lo += moved
    sdd_frame = 0.0
    for i in range(frame):
        sdd_frame += near[i] * near[i]
    if s.probe and far_active and sdd_frame > _PROBE_NEAR_POWER * frame:
        placed = s.fg_base
        if _probe_jump(near, room_w, fg_w, bg_w, far_spectra, newest, acc, spec, time, probe_echo, probe_error, fft, s):
            adopt_lag(s.probe_lag, distance, fast, delay_state, confirm)
            s.lag = s.probe_lag
            s.deferred = False
            if s.fg_base != placed:  # moved (not confirmed where it was): measured again once placed
                s.grace = _PLACEMENT_GRACE_FRAMES
                s.direct_valid = False
                s.sweep = 0
                taps[0, :, :] = 0.0
                _forget_drift_measurements(s)
        base = s.bg_base

    # Both filters' echo estimates, the two-path decision and the output.
    _filter_output(bg_w, far_spectra, newest, base, acc, spec, time, bg_echo, work, order, tw, split)
    _filter_output(fg_w, far_spectra, newest, s.fg_base, acc, spec, time, fg_echo, work, order, tw, split)
    sff, see, sdd, healthy = _compare_paths(near, bg_echo, fg_echo, bg_w, fg_w, s)
    if not healthy:
        s.resets += 1
        _reset(s, bg_w, fg_w, room_w, taps, max(0, lag - _COARSE_MARGIN_FRAMES))
        power[:] = 0.0
        late[:] = 0.0
        unexplained[:, :] = 0.0
        res_gain[:] = 1.0
        out[:] = near
        return
    base = s.bg_base
    if far_active and sdd > _PROBE_NEAR_POWER * frame:
        s.uncancelled = 0 if sff < _PROBE_ACCEPT * sdd else s.uncancelled + 1
    # a filter that cancelled (or whose echo path was found moved, until the filter is placed again)
    converged = (
        far_active
        and sdd > _PROBE_NEAR_POWER * frame
        and (s.erle_num > _ROOM_ERLE * s.erle_den or (s.moved > 0 and s.direct_valid))
    )
    if sff < _ADDING_ENERGY * sdd:
        syf = 0.0
        sef = 0.0
        for i in range(frame):
            out[i] = near[i] - fg_echo[i]
            syf += fg_echo[i] * fg_echo[i]
            sef += out[i] * fg_echo[i]
        missing = converged and -sef > _MISSING_ECHO * syf and sef * sef > _MISSING_ECHO**2 * sff * syf
        s.missing = s.missing + 1 if missing else 0
        if s.missing >= _MISSING_FRAMES:
            s.moved = _MOVED_FRAMES
    else:  # the filter's estimate is not in the capture (the echo path moved): pass the capture through
        out[:] = near
        if converged:
            s.moved = _MOVED_FRAMES
    if far_active and s.grace == 0 and s.bg_base == s.fg_base and s.erle_num > _ROOM_ERLE * s.erle_den:
        room_w[:, :, :] = fg_w

    # Background error spectrum, leakage, residual-echo gain, step sizes, adaptation.
    syy = 0.0
    sey = 0.0
    for i in range(frame):
        eb = near[i] - bg_echo[i]
        syy += bg_echo[i] * bg_echo[i]
        sey += eb * bg_echo[i]
        bg_echo[i] = eb  # reuse as the error buffer
    _padded_spectrum(bg_echo, spec, time, work, order, tw, split)
    echo_sum = _leak_estimate(spec, near_spec, syy, see, err_smooth, echo_smooth, res_error, res_echo, step, s)
    far_only = far_active and s.direct_valid and sff < 0.1 * sdd
    _late_reverberation(tap_peak, res_echo, late)
    _residual_gain(res_error, res_echo, late, power, unexplained, res_gain, floor, far_only, s)
    if s.moved > 0:
        s.moved -= 1
        res_gain[:] = floor
    if far_active:
        _partition_shares(bg_w, prop)
        _step_sizes(spec, step, power, far_spectra, newest, base, prop, acc, sxx, see, syy, sey, s)
        _adapt(spec, step, bg_w, far_spectra, newest, base, acc, prop)
    _constrain_and_measure(bg_w, spec, time, tap_peak, tap_index, s, fft)
    _meter(near, out, sdd, echo_sum, far_active, s)
    _track_direct_path(tap_peak, tap_index, s, frame)
    if far_active:
        _accumulate_cross(near_spec, far_spectra, newest, cross, edges, acc, s)
        _measure_drift(cross, edges, spec, time, fft, s)
