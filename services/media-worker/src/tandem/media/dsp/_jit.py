"""How every DSP kernel is compiled.

``error_model="numpy"``: a division by zero gives inf or NaN instead of raising (a kernel must never
raise on a call's audio; the canceller checks its own state for non-finite values and resets).
Fast-math without ``nnan``/``ninf``: reductions may be reassociated (vectorized), but checks for
non-finite values are kept (with those two flags LLVM may fold them away, and a NaN divisor may
even compare equal to zero).
"""

from __future__ import annotations

from typing import Any

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""LLVM fast-math flags of every kernel: ``numba.njit(cache=True, fastmath=FASTMATH,
error_model="numpy")``."""

Record = Any
"""A state record inside a kernel (one element of a structured array, fields as attributes)."""
