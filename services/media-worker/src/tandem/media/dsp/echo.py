"""Acoustic echo cancellation against the far-end audio the worker forwarded.

A partitioned-block frequency-domain adaptive filter (the MDF structure of Soo & Pang, with the
learning-rate control of Valin, "On adjusting the learning rate in frequency domain echo cancellation
with double-talk", 2007) runs behind a bulk-delay estimator (:mod:`tandem.media.dsp.delay`): the
filter only has to model the room (``tail_ms``), the estimator finds where in the last
``max_delay_ms`` the echo sits and shifts the filter when the delay moves.

Two filters run side by side: the background filter always adapts, the foreground filter produces
the output and only takes over the background's coefficients when they demonstrably cancel more;
a background that diverged in double talk is reset from the foreground. The adaptation step per bin is
the estimated share of residual echo in the error, so a near-end talker freezes adaptation instead of
corrupting the filter. A residual-echo suppressor then computes a spectral gain from the leakage
estimate, applied by the noise suppressor's STFT (see :mod:`tandem.media.dsp.noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Complex, FftPlan, Index, Real, Single, irfft, rfft
from tandem.media.dsp.delay import BANDS, DelayEstimator, update_delay

# Indices into EchoCanceller.scalars.
_BG_BASE = 0  # far-end lag of the background filter's partition 0, frames
_LEAK = 1
_PEY = 2
_PYY = 3
_ADAPTED = 4
_SUM_ADAPT = 5
_DAVG1 = 6
_DAVG2 = 7
_DVAR1 = 8
_DVAR2 = 9
_CONSTRAIN = 10  # next partition to constrain (round robin)
_DC_NEAR = 11
_DC_FAR = 12
_ERLE_NUM = 13  # smoothed near-end energy in far-end-active frames
_ERLE_DEN = 14  # smoothed output energy in the same frames
_ECHO_RATIO = 15  # smoothed echo-estimate / near-end energy ratio
_POS = 16  # ring position of the newest far-end spectrum
_FG_BASE = 17  # far-end lag of the foreground filter's partition 0, frames
_LAG = 18  # the estimator's lag the background was last placed for
_GRACE = 19  # frames left before a newly placed background may be backed out
_NSCALARS = 20

_DC_POLE = 0.995
_MIN_LEAK = 0.005
_VAR1_UPDATE = 0.5
_VAR2_UPDATE = 0.25
_VAR_BACKTRACK = 4.0
_RES_OVERSUBTRACT = 3.0
_ERLE_SMOOTHING = 0.02
_FAR_ACTIVE_POWER = 1e-7
"""Mean squared sample (normalized full scale 1.0) above which the far end counts as talking."""
_MARGIN_FRAMES = 2
"""The filter starts this many frames before the estimated delay, for estimation error."""
_DRIFT_FRAMES = 2
"""A delay step up to this many frames is taken for clock drift rather than a jump."""
_PLACEMENT_GRACE_FRAMES = 50
"""A background filter placed at a new lag is not compared for backing out for this many frames: it
starts from taps that belonged to another lag and needs time to converge before it can be judged."""


@dataclass(frozen=True, slots=True)
class EchoReport:
    """What the canceller sees on its call direction.

    ``delay_ms`` is the locked bulk delay (whole 10 ms frames), ``erle_db`` the smoothed echo return
    loss enhancement of the linear filter over frames with far-end activity, ``echo_present`` whether
    the echo estimate carries at least a tenth (-10 dB) of the captured energy.
    """

    echo_present: bool
    delay_ms: float
    erle_db: float


class EchoCanceller:
    """Per-call-direction echo canceller state; all arrays are allocated here, none per frame.

    ``sample_rate`` in Hz (10 ms frames of ``sample_rate // 100`` samples), ``tail_ms`` the room
    response the adaptive filter models, ``max_delay_ms`` the bulk delay range searched,
    ``suppression_floor_db`` the lowest residual-echo gain.
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
        max_delay_frames = math.ceil(max_delay_ms / 10) + _MARGIN_FRAMES
        self.history = max_delay_frames + self.partitions + 1
        hz_per_bin = sample_rate / fft_size
        edges = np.round(np.geomspace(250.0, 4000.0, BANDS + 1) / hz_per_bin).astype(np.int64)
        self.delay = DelayEstimator(max_delay_frames, np.maximum.accumulate(edges + np.arange(BANDS + 1)))
        self.far_window: Real = np.zeros(fft_size)
        # Spectra and weights are split into real and imaginary float32 planes so the partition
        # loops vectorize; axis 0 is real/imaginary.
        self.far_spectra: Single = np.zeros((2, self.history, bins), dtype=np.float32)
        self.near_spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.bg_weights: Single = np.zeros((2, self.partitions, bins), dtype=np.float32)
        self.fg_weights: Single = np.zeros((2, self.partitions, bins), dtype=np.float32)
        self.accumulator: Single = np.zeros((2, bins), dtype=np.float32)
        self.spectrum: Complex = np.zeros(bins, dtype=np.complex128)
        self.time: Real = np.zeros(fft_size)
        self.near: Real = np.zeros(frame)
        self.bg_echo: Real = np.zeros(frame)
        self.fg_echo: Real = np.zeros(frame)
        # per-bin smoothed powers: far-end, error/echo (leak regression), residual-echo suppressor
        self.power: Real = np.zeros(bins)
        self.step: Real = np.zeros(bins)
        self.err_smooth: Real = np.zeros(bins)
        self.echo_smooth: Real = np.zeros(bins)
        self.res_error: Real = np.zeros(bins)
        self.res_echo: Real = np.zeros(bins)
        self.residual_gain: Real = np.ones(bins)
        self.prop: Real = np.zeros(self.partitions)
        self.suppression_floor = 10.0 ** (suppression_floor_db / 20.0)
        self.scalars: Real = np.zeros(_NSCALARS)
        self.scalars[_LEAK] = 1.0
        self.scalars[_PYY] = 1.0

    def process(self, near: Real, far: Real, out: Real) -> None:
        """Cancel echo of ``far`` (the forwarded frame) from ``near`` (the captured frame) into ``out``.

        All three are float64 frames of ``frame`` samples at normalized full scale 1.0; ``out`` gets
        the linear canceller's output and :attr:`residual_gain` the suppressor's gain per FFT bin.
        """
        d = self.delay
        p = self.plan
        cancel_frame(
            near, far, out, self.far_window, self.far_spectra, self.near_spectrum,
            self.bg_weights, self.fg_weights, self.accumulator, self.spectrum, self.time, self.near,
            self.bg_echo, self.fg_echo, self.power, self.step, self.err_smooth, self.echo_smooth,
            self.res_error, self.res_echo, self.residual_gain, self.prop, self.scalars,
            self.suppression_floor,
            p.work, p.order, p.twiddle, p.split,
            d.band_edges, d.far_bits, d.far_active, d.far_mean, d.near_mean, d.bands,
            d.near_previous, d.distance, d.scalars, d.confirm_frames,
        )  # fmt: skip

    @property
    def report(self) -> EchoReport:
        """The current echo state of this direction."""
        s = self.scalars
        erle = 10.0 * math.log10((s[_ERLE_NUM] + 1e-12) / (s[_ERLE_DEN] + 1e-12))
        return EchoReport(
            echo_present=bool(s[_ECHO_RATIO] > 0.1),
            delay_ms=10.0 * self.delay.delay_frames,
            erle_db=erle,
        )


@nb.njit(cache=True, fastmath=True)
def _shift_partitions(weights: Single, shift: int) -> None:
    """Keep the filter's absolute taps after its bulk lag grew by ``shift`` frames (w[p] <- w[p+shift])."""
    parts = weights.shape[1]
    order = range(parts) if shift > 0 else range(parts - 1, -1, -1)
    for q in order:
        src = q + shift
        for c in range(2):
            for k in range(weights.shape[2]):
                weights[c, q, k] = weights[c, src, k] if 0 <= src < parts else 0.0


@nb.njit(cache=True, fastmath=True)
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


@nb.njit(cache=True, fastmath=True)
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


@nb.njit(cache=True, fastmath=True)
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


@nb.njit(cache=True, fastmath=True)
def cancel_frame(
    near_in: Real, far_in: Real, out: Real, far_window: Real, far_spectra: Single,
    near_spec: Complex, bg_w: Single, fg_w: Single, acc: Single, spec: Complex, time: Real,
    near: Real, bg_echo: Real, fg_echo: Real, power: Real, step: Real, err_smooth: Real,
    echo_smooth: Real, res_error: Real, res_echo: Real, res_gain: Real, prop: Real, s: Real,
    floor: float,
    work: Real, order: Index, tw: Real, split: Complex,
    edges: Index, far_bits: np.ndarray, far_active: np.ndarray, far_mean: Real, near_mean: Real,
    bands: Real, near_previous: Real, distance: Real, delay_scalars: Real, confirm: int,
) -> None:  # fmt: skip
    """One 10 ms frame of the canceller; see :meth:`EchoCanceller.process`."""
    frame = near_in.shape[0]
    n = far_window.shape[0]
    history = far_spectra.shape[1]
    parts = bg_w.shape[1]
    bins = spec.shape[0]

    # DC removal on both inputs, far-end window slide and spectra.
    dc_near = s[_DC_NEAR]
    dc_far = s[_DC_FAR]
    for i in range(n - frame):
        far_window[i] = far_window[i + frame]
    for i in range(frame):
        dc_near = _DC_POLE * dc_near + (1.0 - _DC_POLE) * near_in[i]
        dc_far = _DC_POLE * dc_far + (1.0 - _DC_POLE) * far_in[i]
        near[i] = near_in[i] - dc_near
        far_window[n - frame + i] = far_in[i] - dc_far
    s[_DC_NEAR] = dc_near
    s[_DC_FAR] = dc_far
    newest = (int(s[_POS]) + 1) % history
    s[_POS] = newest
    rfft(far_window, spec, work, order, tw, split)
    for k in range(bins):
        far_spectra[0, newest, k] = spec[k].real
        far_spectra[1, newest, k] = spec[k].imag
    _padded_spectrum(near, near_spec, time, work, order, tw, split)

    lag = update_delay(
        spec, near_spec, edges, far_bits, far_active, far_mean, near_mean, bands, near_previous,
        distance, delay_scalars, confirm,
    )  # fmt: skip
    # A new bulk delay re-places only the background filter: after a jump it keeps its shape
    # relative to the new lag, after a small (drift) step it keeps its absolute taps. The two-path
    # logic below then either promotes it or, when the estimate was wrong (double talk), backs it out
    # once the grace period has passed; a backed-out lag is placed again after another grace period.
    if s[_GRACE] > 0.0:
        s[_GRACE] -= 1.0
    if lag != int(s[_LAG]):
        s[_LAG] = lag
        s[_GRACE] = _PLACEMENT_GRACE_FRAMES
        old_base = int(s[_BG_BASE])
        base = max(0, lag - _MARGIN_FRAMES)
        if abs(base - old_base) <= _DRIFT_FRAMES:
            _shift_partitions(bg_w, base - old_base)
        s[_BG_BASE] = base
    base = int(s[_BG_BASE])
    fg_base = int(s[_FG_BASE])

    # Aligned far-end energy (Parseval on the newest aligned window, scaled to one frame).
    aligned = (newest - base) % history
    sxx = 0.0
    for k in range(bins):
        x_pow = far_spectra[0, aligned, k] ** 2 + far_spectra[1, aligned, k] ** 2
        sxx += x_pow if (k == 0 or k == bins - 1) else 2.0 * x_pow
        power[k] = 0.98 * power[k] + 0.02 * x_pow
    sxx *= frame / (n * n)

    _filter_output(bg_w, far_spectra, newest, base, acc, spec, time, bg_echo, work, order, tw, split)
    _filter_output(fg_w, far_spectra, newest, fg_base, acc, spec, time, fg_echo, work, order, tw, split)

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
    tiny = 1e-12 * frame
    sff += tiny
    see += tiny
    dbf += tiny

    # Two-path logic: promote a better background, back out a background that diverged.
    diff = sff - see
    s[_DAVG1] = 0.6 * s[_DAVG1] + 0.4 * diff
    s[_DAVG2] = 0.85 * s[_DAVG2] + 0.15 * diff
    s[_DVAR1] = 0.36 * s[_DVAR1] + 0.16 * sff * dbf
    s[_DVAR2] = 0.7225 * s[_DVAR2] + 0.0225 * sff * dbf
    if (
        diff * abs(diff) > sff * dbf
        or s[_DAVG1] * abs(s[_DAVG1]) > _VAR1_UPDATE * s[_DVAR1]
        or s[_DAVG2] * abs(s[_DAVG2]) > _VAR2_UPDATE * s[_DVAR2]
    ):
        fg_w[:, :, :] = bg_w
        s[_FG_BASE] = base
        fg_echo[:] = bg_echo
        sff = see
        s[_DAVG1] = s[_DAVG2] = s[_DVAR1] = s[_DVAR2] = 0.0
    elif s[_GRACE] == 0.0 and (
        -diff * abs(diff) > _VAR_BACKTRACK * sff * dbf
        or -s[_DAVG1] * abs(s[_DAVG1]) > _VAR_BACKTRACK * s[_DVAR1]
        or -s[_DAVG2] * abs(s[_DAVG2]) > _VAR_BACKTRACK * s[_DVAR2]
    ):
        bg_w[:, :, :] = fg_w
        if fg_base != base:
            s[_LAG] = -1.0  # the estimator's lag is tried again, after another grace period
        s[_BG_BASE] = base = fg_base
        bg_echo[:] = fg_echo
        see = sff
        s[_DAVG1] = s[_DAVG2] = s[_DVAR1] = s[_DVAR2] = 0.0

    for i in range(frame):
        out[i] = near[i] - fg_echo[i]

    # Background error and echo spectra (zero-padded frames) for the step size and the gradient.
    syy = 0.0
    sey = 0.0
    for i in range(frame):
        eb = near[i] - bg_echo[i]
        syy += bg_echo[i] * bg_echo[i]
        sey += eb * bg_echo[i]
        bg_echo[i] = eb  # reuse as the error buffer
    _padded_spectrum(bg_echo, spec, time, work, order, tw, split)
    pey = 0.0
    pyy = 0.0
    echo_sum = 0.0
    for k in range(bins):
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
        step[k] = y_pow  # stash |Y|^2 for the step below
    pyy = math.sqrt(pyy)
    pey = pey / (pyy + 1e-30)
    alpha = min(0.02 * syy, 0.005 * see) / see
    s[_PEY] = (1.0 - alpha) * s[_PEY] + alpha * pey
    s[_PYY] = (1.0 - alpha) * s[_PYY] + alpha * pyy
    s[_PYY] = max(s[_PYY], 1e-30)
    s[_PEY] = min(max(s[_PEY], _MIN_LEAK * s[_PYY]), s[_PYY])
    leak = s[_PEY] / s[_PYY]
    s[_LEAK] = leak

    # Residual-echo suppressor: the echo share of the error is leak x echo-estimate power.
    res_leak = _RES_OVERSUBTRACT * min(2.0 * leak, 1.0)
    for k in range(bins):
        g = max(1.0 - res_leak * res_echo[k] / (res_error[k] + 1e-20), floor)
        # fast attack, slower release so echo tails do not pump through
        res_gain[k] = g if g < res_gain[k] else 0.5 * res_gain[k] + 0.5 * g

    far_active = sxx > _FAR_ACTIVE_POWER * frame
    if s[_ADAPTED] == 0.0 and s[_SUM_ADAPT] > parts and leak * syy > 0.03 * syy:
        s[_ADAPTED] = 1.0
    if s[_ADAPTED] != 0.0:
        rer = (1e-4 * sxx + 3.0 * leak * syy) / see
        rer = min(max(rer, sey * sey / (1e-30 + see * syy)), 0.5)
        for k in range(bins):
            e_pow = spec[k].real ** 2 + spec[k].imag ** 2 + 1e-20
            r = min(leak * step[k], 0.5 * e_pow)
            r = 0.7 * r + 0.3 * rer * e_pow
            step[k] = r / (e_pow * (power[k] + 1e-10 * n * n))
    else:
        rate = 0.0
        if far_active:
            rate = min(0.25 * sxx, 0.25 * see) / see
        s[_SUM_ADAPT] += rate
        for k in range(bins):
            step[k] = rate / (power[k] + 1e-10 * n * n)

    # Gradient step on every partition, gradient constraint on one partition per frame.
    # Proportionate split of the step over partitions (larger where the filter has energy), then
    # the gradient conj(X) * E, constrained to one partition's length on one partition at a time.
    if far_active:
        _partition_shares(bg_w, prop)
        for k in range(bins):
            acc[0, k] = step[k] * spec[k].real
            acc[1, k] = step[k] * spec[k].imag
        for p in range(parts):
            row = (newest - base - p) % history
            share = np.float32(prop[p])
            for k in range(bins):
                xr = far_spectra[0, row, k]
                xi = far_spectra[1, row, k]
                bg_w[0, p, k] += share * (xr * acc[0, k] + xi * acc[1, k])
                bg_w[1, p, k] += share * (xr * acc[1, k] - xi * acc[0, k])
    c = int(s[_CONSTRAIN])
    s[_CONSTRAIN] = (c + 1) % parts
    for k in range(bins):
        spec[k] = complex(bg_w[0, c, k], bg_w[1, c, k])
    irfft(spec, time, work, order, tw, split)
    time[frame:] = 0.0
    rfft(time, spec, work, order, tw, split)
    for k in range(bins):
        bg_w[0, c, k] = spec[k].real
        bg_w[1, c, k] = spec[k].imag

    if far_active:
        sout = 0.0
        for i in range(frame):
            sout += out[i] * out[i]
        s[_ERLE_NUM] += _ERLE_SMOOTHING * (sdd - s[_ERLE_NUM])
        s[_ERLE_DEN] += _ERLE_SMOOTHING * (sout - s[_ERLE_DEN])
        ratio = min(2.0 * echo_sum / (sdd * n + 1e-20), 1.0)
        s[_ECHO_RATIO] += _ERLE_SMOOTHING * (ratio - s[_ECHO_RATIO])
