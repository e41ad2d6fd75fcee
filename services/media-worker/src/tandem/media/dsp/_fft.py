"""Real FFT of a power-of-two length for Numba kernels (Numba has no ``np.fft`` in nopython mode).

A length-``n`` real transform runs as one ``n/2``-point complex radix-2 transform plus a split step.
The tables are built once per plan; the transforms work in caller-owned buffers and allocate nothing.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

Real = npt.NDArray[np.float64]
Complex = npt.NDArray[np.complex128]
Single = npt.NDArray[np.float32]
Index = npt.NDArray[np.int64]


class FftPlan:
    """Tables and scratch for real transforms of ``size`` samples (a power of two, >= 8).

    The complex work buffer and the twiddles are stored as separate real and imaginary planes
    (axis 0) so that the butterfly loops vectorize.
    """

    def __init__(self, size: int) -> None:
        if size < 8 or size & (size - 1):
            raise ValueError("FFT size must be a power of two >= 8")
        half = size // 2
        bits = half.bit_length() - 1
        self.size = size
        self.bins = half + 1
        self.reverse: Index = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(half)], dtype=np.int64)
        # stage twiddles back to back: the stage joining blocks of ``s`` uses entries [s-1, 2s-1)
        twiddle = np.concatenate([np.exp(-1j * np.pi * np.arange(s) / s) for s in (1 << i for i in range(bits))])
        self.twiddle: Real = np.stack([twiddle.real, twiddle.imag])
        self.split: Complex = np.exp(-2j * np.pi * np.arange(half + 1) / size)
        self.work: Real = np.zeros((2, half))


@nb.njit(cache=True, fastmath=True)
def _complex_fft(work: Real, reverse: Index, twiddle: Real) -> None:
    """In-place unnormalized forward radix-2 transform of ``work[0] + 1j * work[1]``."""
    re = work[0]
    im = work[1]
    n = re.shape[0]
    for i in range(n):
        j = reverse[i]
        if j > i:
            re[i], re[j] = re[j], re[i]
            im[i], im[j] = im[j], im[i]
    for start in range(0, n, 2):
        ar = re[start]
        ai = im[start]
        re[start] = ar + re[start + 1]
        im[start] = ai + im[start + 1]
        re[start + 1] = ar - re[start + 1]
        im[start + 1] = ai - im[start + 1]
    tr = twiddle[0]
    ti = twiddle[1]
    span = 2
    while span < n:
        for start in range(0, n, 2 * span):
            for k in range(span):
                a = start + k
                b = a + span
                wr = tr[span - 1 + k]
                wi = ti[span - 1 + k]
                br = re[b] * wr - im[b] * wi
                bi = re[b] * wi + im[b] * wr
                re[b] = re[a] - br
                im[b] = im[a] - bi
                re[a] += br
                im[a] += bi
        span *= 2


@nb.njit(cache=True, fastmath=True)
def rfft(signal: Real, out: Complex, work: Real, reverse: Index, twiddle: Real, split: Complex) -> None:
    """Forward real transform: ``out[:n/2+1] = np.fft.rfft(signal)`` for ``signal`` of ``n`` samples."""
    half = work.shape[1]
    for i in range(half):
        work[0, i] = signal[2 * i]
        work[1, i] = signal[2 * i + 1]
    _complex_fft(work, reverse, twiddle)
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


@nb.njit(cache=True, fastmath=True)
def irfft(spectrum: Complex, out: Real, work: Real, reverse: Index, twiddle: Real, split: Complex) -> None:
    """Inverse real transform: ``out = np.fft.irfft(spectrum)`` for a spectrum of ``n/2+1`` bins."""
    half = work.shape[1]
    # inverse transform as conj(forward(conj(.))), folding the conjugations into the split steps
    for k in range(half):
        xk = spectrum[k]
        xc = spectrum[half - k].conjugate()
        even = 0.5 * (xk + xc)
        odd = 0.5 * (xk - xc) * split[k].conjugate()
        z = even + 1j * odd
        work[0, k] = z.real
        work[1, k] = -z.imag
    _complex_fft(work, reverse, twiddle)
    scale = 1.0 / half
    for i in range(half):
        out[2 * i] = work[0, i] * scale
        out[2 * i + 1] = -work[1, i] * scale
