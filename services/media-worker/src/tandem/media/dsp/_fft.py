"""Real FFT for Numba kernels (Numba has no ``np.fft`` in nopython mode).

A length-``n`` real transform runs as one ``n/2``-point complex transform plus a split step. The
complex transform is an iterative decimation-in-time mixed-radix transform for ``n/2 = 2^a 3^b 5^c``:
radix-5 and radix-3 passes first, one radix-2 pass when ``a`` is odd, then radix-4 passes (each does
the work of two radix-2 stages with three complex multiplications per four points instead of four).
Supporting 3 and 5 lets a 10 ms frame use a transform of exactly two frames (320 points at 16 kHz)
instead of the next power of two (512), which makes every per-bin loop of the callers ~37 % shorter.
The input permutation is folded into the packing step of :func:`rfft` and :func:`irfft`. The tables
are built once per plan; the transforms work in caller-owned buffers and allocate nothing.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._jit import FASTMATH

Real = npt.NDArray[np.float64]
Complex = npt.NDArray[np.complex128]
Single = npt.NDArray[np.float32]
Index = npt.NDArray[np.int64]
FftTables = tuple[Real, Index, Real, Complex]
"""A plan's work buffer, index table, twiddles and split factors, as the kernels take them."""

_SIN60 = math.sqrt(3.0) / 2.0
_COS72 = math.cos(2.0 * math.pi / 5.0)
_COS144 = math.cos(4.0 * math.pi / 5.0)
_SIN72 = math.sin(2.0 * math.pi / 5.0)
_SIN144 = math.sin(4.0 * math.pi / 5.0)


def _radices(points: int) -> list[int]:
    """Radices of the passes, first pass first, for a complex transform of ``points``."""
    radices = []
    for radix in (5, 3):
        while points % radix == 0:
            radices.append(radix)
            points //= radix
    twos = points.bit_length() - 1
    if points != 1 << twos:
        raise ValueError("FFT size must be 2 * 2^a * 3^b * 5^c")
    return radices + [2] * (twos % 2) + [4] * (twos // 2)


def _input_order(indices: list[int], radices: list[int]) -> list[int]:
    """Decimation-in-time input order: the last pass joins ``r`` sub-transforms of ``x[j::r]``."""
    if not radices:
        return indices
    r = radices[-1]
    return [i for j in range(r) for i in _input_order(indices[j::r], radices[:-1])]


class FftPlan:
    """Tables and scratch for real transforms of ``size`` samples (``size = 2 * 2^a 3^b 5^c``, >= 8).

    The complex work buffer is stored as separate real and imaginary planes (axis 0). ``order`` is
    the position of each input point in the work buffer (``n/2`` entries) followed by the passes,
    three entries each (so a transform takes one index table): radix, span (the length of the
    sub-transforms it joins) and the column where its twiddles start in ``twiddle``: for output
    ``k < span`` and input ``j < radix`` (``j >= 1``) the factor ``exp(-2j*pi*j*k/(radix*span))`` at
    column ``start + (j-1)*span + k``, rows re/im.
    """

    def __init__(self, size: int) -> None:
        if size < 8 or size % 2:
            raise ValueError("FFT size must be an even number >= 8")
        half = size // 2
        radices = _radices(half)
        self.size = size
        self.bins = half + 1
        order = _input_order(list(range(half)), radices)
        passes, columns, span = [], [], 1
        start = 0
        for r in radices:
            j, k = np.meshgrid(np.arange(1, r), np.arange(span), indexing="ij")
            columns.append(np.exp(-2j * np.pi * j * k / (r * span)).ravel())
            passes.append((r, span, start))
            start += (r - 1) * span
            span *= r
        twiddle = np.concatenate(columns)
        positions = np.argsort(np.array(order, dtype=np.int64))
        self.order: Index = np.concatenate([positions, np.array(passes, dtype=np.int64).ravel()])
        self.twiddle: Real = np.stack([twiddle.real, twiddle.imag])
        self.split: Complex = np.exp(-2j * np.pi * np.arange(half + 1) / size)
        self.work: Real = np.zeros((2, half))


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _rotate(re: Real, im: Real, i: int, tr: Real, ti: Real, w: int) -> tuple[float, float]:
    """``(re[i] + 1j*im[i]) * (tr[w] + 1j*ti[w])`` as a (real, imaginary) pair."""
    return re[i] * tr[w] - im[i] * ti[w], re[i] * ti[w] + im[i] * tr[w]


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _radix2(re: Real, im: Real, span: int, tr: Real, ti: Real, t0: int) -> None:
    for start in range(0, re.shape[0], 2 * span):
        for k in range(span):
            a = start + k
            b = a + span
            br, bi = _rotate(re, im, b, tr, ti, t0 + k)
            re[b] = re[a] - br
            im[b] = im[a] - bi
            re[a] += br
            im[a] += bi


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _radix4(re: Real, im: Real, span: int, tr: Real, ti: Real, t0: int) -> None:
    for start in range(0, re.shape[0], 4 * span):
        for k in range(span):
            i0 = start + k
            i1 = i0 + span
            i2 = i1 + span
            i3 = i2 + span
            w1 = t0 + k
            w2 = w1 + span
            w3 = w2 + span
            a1r, a1i = _rotate(re, im, i1, tr, ti, w1)
            a2r, a2i = _rotate(re, im, i2, tr, ti, w2)
            a3r, a3i = _rotate(re, im, i3, tr, ti, w3)
            s0r = re[i0] + a2r
            s0i = im[i0] + a2i
            d0r = re[i0] - a2r
            d0i = im[i0] - a2i
            s1r = a1r + a3r
            s1i = a1i + a3i
            d1r = a1r - a3r
            d1i = a1i - a3i
            re[i0] = s0r + s1r
            im[i0] = s0i + s1i
            re[i2] = s0r - s1r
            im[i2] = s0i - s1i
            # X[k+s] = d0 - 1j*d1, X[k+3s] = d0 + 1j*d1
            re[i1] = d0r + d1i
            im[i1] = d0i - d1r
            re[i3] = d0r - d1i
            im[i3] = d0i + d1r


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _radix3(re: Real, im: Real, span: int, tr: Real, ti: Real, t0: int) -> None:
    for start in range(0, re.shape[0], 3 * span):
        for k in range(span):
            i0 = start + k
            i1 = i0 + span
            i2 = i1 + span
            w1 = t0 + k
            w2 = w1 + span
            a1r, a1i = _rotate(re, im, i1, tr, ti, w1)
            a2r, a2i = _rotate(re, im, i2, tr, ti, w2)
            br = a1r + a2r
            bi = a1i + a2i
            # -1j * sin(60) * (a1 - a2)
            dr = _SIN60 * (a1i - a2i)
            di = -_SIN60 * (a1r - a2r)
            mr = re[i0] - 0.5 * br
            mi = im[i0] - 0.5 * bi
            re[i0] += br
            im[i0] += bi
            re[i1] = mr + dr
            im[i1] = mi + di
            re[i2] = mr - dr
            im[i2] = mi - di


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _radix5(re: Real, im: Real, span: int, tr: Real, ti: Real, t0: int) -> None:
    for start in range(0, re.shape[0], 5 * span):
        for k in range(span):
            i0 = start + k
            i1 = i0 + span
            i2 = i1 + span
            i3 = i2 + span
            i4 = i3 + span
            w1 = t0 + k
            w2 = w1 + span
            w3 = w2 + span
            w4 = w3 + span
            a1r, a1i = _rotate(re, im, i1, tr, ti, w1)
            a2r, a2i = _rotate(re, im, i2, tr, ti, w2)
            a3r, a3i = _rotate(re, im, i3, tr, ti, w3)
            a4r, a4i = _rotate(re, im, i4, tr, ti, w4)
            b1r = a1r + a4r
            b1i = a1i + a4i
            b2r = a2r + a3r
            b2i = a2i + a3i
            d1r = a1r - a4r
            d1i = a1i - a4i
            d2r = a2r - a3r
            d2i = a2i - a3i
            x0r = re[i0]
            x0i = im[i0]
            m1r = x0r + _COS72 * b1r + _COS144 * b2r
            m1i = x0i + _COS72 * b1i + _COS144 * b2i
            m2r = x0r + _COS144 * b1r + _COS72 * b2r
            m2i = x0i + _COS144 * b1i + _COS72 * b2i
            # n1 = s72 d1 + s144 d2 and n2 = s144 d1 - s72 d2, applied as -1j * n
            n1r = _SIN72 * d1r + _SIN144 * d2r
            n1i = _SIN72 * d1i + _SIN144 * d2i
            n2r = _SIN144 * d1r - _SIN72 * d2r
            n2i = _SIN144 * d1i - _SIN72 * d2i
            re[i0] = x0r + b1r + b2r
            im[i0] = x0i + b1i + b2i
            re[i1] = m1r + n1i
            im[i1] = m1i - n1r
            re[i4] = m1r - n1i
            im[i4] = m1i + n1r
            re[i2] = m2r + n2i
            im[i2] = m2i - n2r
            re[i3] = m2r - n2i
            im[i3] = m2i + n2r


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _complex_fft(work: Real, order: Index, twiddle: Real) -> None:
    """In-place unnormalized forward transform of ``work[0] + 1j * work[1]``, given in input order."""
    re = work[0]
    im = work[1]
    tr = twiddle[0]
    ti = twiddle[1]
    for p in range(re.shape[0], order.shape[0], 3):
        radix = order[p]
        span = order[p + 1]
        t0 = order[p + 2]
        if radix == 4:
            _radix4(re, im, span, tr, ti, t0)
        elif radix == 2:
            _radix2(re, im, span, tr, ti, t0)
        elif radix == 5:
            _radix5(re, im, span, tr, ti, t0)
        else:
            _radix3(re, im, span, tr, ti, t0)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def rfft(signal: Real, out: Complex, work: Real, order: Index, twiddle: Real, split: Complex) -> None:
    """Forward real transform: ``out[:n/2+1] = np.fft.rfft(signal)`` for ``signal`` of ``n`` samples."""
    half = work.shape[1]
    for i in range(half):
        j = order[i]
        work[0, j] = signal[2 * i]
        work[1, j] = signal[2 * i + 1]
    _complex_fft(work, order, twiddle)
    # split the half-length transform z into the real transform: X[k] = E[k] + W^k O[k]
    re = work[0]
    im = work[1]
    out[0] = re[0] + im[0]
    out[half] = re[0] - im[0]
    for k in range(1, half):
        ar = re[k]
        ai = im[k]
        br = re[half - k]
        bi = -im[half - k]
        er = 0.5 * (ar + br)
        ei = 0.5 * (ai + bi)
        orr = 0.5 * (ai - bi)
        oi = -0.5 * (ar - br)
        wr = split[k].real
        wi = split[k].imag
        out[k] = complex(er + wr * orr - wi * oi, ei + wr * oi + wi * orr)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def irfft(spectrum: Complex, out: Real, work: Real, order: Index, twiddle: Real, split: Complex) -> None:
    """Inverse real transform: ``out = np.fft.irfft(spectrum)`` for a spectrum of ``n/2+1`` bins."""
    half = work.shape[1]
    # inverse transform as conj(forward(conj(.))), folding the conjugations into the split steps
    for k in range(half):
        xk = spectrum[k]
        xc = spectrum[half - k].conjugate()
        even = 0.5 * (xk + xc)
        odd = 0.5 * (xk - xc) * split[k].conjugate()
        z = even + 1j * odd
        j = order[k]
        work[0, j] = z.real
        work[1, j] = -z.imag
    _complex_fft(work, order, twiddle)
    scale = 1.0 / half
    for i in range(half):
        out[2 * i] = work[0, i] * scale
        out[2 * i + 1] = -work[1, i] * scale
