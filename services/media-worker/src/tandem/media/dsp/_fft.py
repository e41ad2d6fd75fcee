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
    """Tables and scratch for real transforms of ``size`` samples (a power of two, >= 8)."""

    def __init__(self, size: int) -> None:
        if size < 8 or size & (size - 1):
            raise ValueError("FFT size must be a power of two >= 8")
        half = size // 2
        bits = half.bit_length() - 1
        self.size = size
        self.bins = half + 1
        self.reverse: Index = np.array(
            [int(format(i, f"0{bits}b")[::-1], 2) for i in range(half)], dtype=np.int64
        )
        # stage twiddles back to back: the stage joining blocks of ``s`` uses entries [s-1, 2s-1)
        self.twiddle: Complex = np.concatenate(
            [np.exp(-1j * np.pi * np.arange(s) / s) for s in (1 << i for i in range(bits))]
        )
        self.split: Complex = np.exp(-2j * np.pi * np.arange(half + 1) / size)
        self.work: Complex = np.zeros(half, dtype=np.complex128)


@nb.njit(cache=True, fastmath=True)
def _complex_fft(buf: Complex, reverse: Index, twiddle: Complex) -> None:
    """In-place unnormalized forward radix-2 transform of ``buf``."""
    n = buf.shape[0]
    for i in range(n):
        j = reverse[i]
        if j > i:
            tmp = buf[i]
            buf[i] = buf[j]
            buf[j] = tmp
    for start in range(0, n, 2):
        a = buf[start]
        b = buf[start + 1]
        buf[start] = a + b
        buf[start + 1] = a - b
    span = 2
    while span < n:
        for start in range(0, n, 2 * span):
            for k in range(span):
                b = buf[start + k + span] * twiddle[span - 1 + k]
                a = buf[start + k]
                buf[start + k] = a + b
                buf[start + k + span] = a - b
        span *= 2


@nb.njit(cache=True, fastmath=True)
def rfft(signal: Real, out: Complex, work: Complex, reverse: Index, twiddle: Complex, split: Complex) -> None:
    """Forward real transform: ``out[:n/2+1] = np.fft.rfft(signal)`` for ``signal`` of ``n`` samples."""
    half = work.shape[0]
    for i in range(half):
        work[i] = complex(signal[2 * i], signal[2 * i + 1])
    _complex_fft(work, reverse, twiddle)
    for k in range(half + 1):
        zk = work[k % half]
        zc = work[(half - k) % half].conjugate()
        even = 0.5 * (zk + zc)
        odd = -0.5j * (zk - zc)
        out[k] = even + split[k] * odd


@nb.njit(cache=True, fastmath=True)
def irfft(
    spectrum: Complex, out: Real, work: Complex, reverse: Index, twiddle: Complex, split: Complex
) -> None:
    """Inverse real transform: ``out = np.fft.irfft(spectrum)`` for a spectrum of ``n/2+1`` bins."""
    half = work.shape[0]
    # inverse transform as conj(forward(conj(.))), folding the conjugations into the split steps
    for k in range(half):
        xk = spectrum[k]
        xc = spectrum[half - k].conjugate()
        even = 0.5 * (xk + xc)
        odd = 0.5 * (xk - xc) * split[k].conjugate()
        work[k] = (even + 1j * odd).conjugate()
    _complex_fft(work, reverse, twiddle)
    scale = 1.0 / half
    for i in range(half):
        out[2 * i] = work[i].real * scale
        out[2 * i + 1] = -work[i].imag * scale
