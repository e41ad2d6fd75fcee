"""Voice activity detection: the statistical-model likelihood-ratio test of Sohn, Kim & Sung (1999).

Per FFT bin the log likelihood ratio of speech versus noise follows from the a priori and a posteriori
SNRs that the noise suppressor already estimates (``gamma*xi/(1+xi) - log(1+xi)``); their mean over the
speech band (200-4000 Hz) above ``threshold`` marks a speech frame, and a hangover bridges the gaps
between syllables.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Real
from tandem.media.dsp._jit import FASTMATH

VAD_STATE = np.dtype(
    [
        ("hang", np.int64),  # frames of hangover left,
        ("score", np.float64),  # mean log likelihood ratio of the last frame
    ]
)
"""The state of one call direction (one record)."""

_BAND_HZ = (200.0, 4000.0)


class VoiceActivityDetector:
    """Per-call-direction VAD over the noise suppressor's SNR estimates of an FFT of ``fft_size``
    samples at ``sample_rate`` Hz. ``threshold`` is the mean log likelihood ratio that means speech,
    ``hangover_frames`` (10 ms each) keep the decision up after the last speech frame."""

    def __init__(
        self,
        sample_rate: int = 16000,
        fft_size: int = 320,
        threshold: float = 0.3,
        hangover_frames: int = 10,
    ) -> None:
        hz_per_bin = sample_rate / fft_size
        self.first_bin = int(_BAND_HZ[0] / hz_per_bin)
        self.last_bin = int(_BAND_HZ[1] / hz_per_bin)
        self.threshold = threshold
        self.hangover_frames = hangover_frames
        self.state = np.zeros(1, dtype=VAD_STATE)

    def process(self, prior_snr: Real, post_snr: Real) -> bool:
        """Classify one frame from per-bin a priori and a posteriori SNRs; True when it holds speech."""
        return bool(
            detect_frame(
                prior_snr, post_snr, self.first_bin, self.last_bin, self.state, self.threshold,
                self.hangover_frames,
            )
        )  # fmt: skip

    @property
    def score(self) -> float:
        """Mean log likelihood ratio of the last frame (0 for noise, larger for speech)."""
        return float(self.state[0]["score"])


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def detect_frame(
    prior_snr: Real, post_snr: Real, first: int, last: int, state: npt.NDArray[np.void], threshold: float, hangover: int
) -> bool:
    """One frame of the VAD; see :meth:`VoiceActivityDetector.process`."""
    s = state[0]
    total = 0.0
    for k in range(first, last):
        xi = prior_snr[k]
        total += post_snr[k] * xi / (1.0 + xi) - math.log1p(xi)
    score = total / (last - first)
    s.score = score
    if score > threshold:
        s.hang = hangover
        return True
    if s.hang > 0:
        s.hang -= 1
        return True
    return False
