"""One call direction's audio chain: echo canceller, noise suppressor, VAD, AGC and meters.

At 16 kHz the stages run directly. At 48 kHz the capture and the far-end reference are decimated to a
16 kHz band where echo and noise are handled; the 8-24 kHz band is split off the capture, scaled by
the mean suppression gain of the top of the 16 kHz band (so echo and noise are not let through
above 8 kHz) and added back before the AGC and limiter, which run at 48 kHz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Real
from tandem.media.dsp._jit import FASTMATH
from tandem.media.dsp.agc import GainControl
from tandem.media.dsp.echo import EchoCanceller, EchoReport
from tandem.media.dsp.meters import AudioMeters, MeterReading
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.resample import DELAY_48K, Decimator, Interpolator
from tandem.media.dsp.vad import VoiceActivityDetector

CORE_RATE = 16000
"""Sample rate (Hz) of the band where echo and noise are processed."""
SAMPLE_RATES = (16000, 48000)
_PCM_SCALE = 1.0 / 32768.0
Pcm = npt.NDArray[np.int16]
_HIGH_BAND_FROM = 0.75
"""The top quarter of the 16 kHz band (6-8 kHz) sets the gain of the band above 8 kHz."""


_MOSTLY_REMOVED = 0.1
"""A frame of which processing kept less than this fraction of the energy was echo or noise."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Per-call settings. Levels in dB re full scale, times in ms; ``vad_threshold`` is the mean log
    likelihood ratio above which a frame is speech. A frame is never speech when what is left of it
    after the echo and noise are removed is quieter than ``vad_floor_dbfs`` or than a tenth of what
    was captured: left-over echo in a quiet room has a high SNR, but it must neither count as the
    party's talk nor pull the AGC's gain up. With the echo canceller on, the AGC learns the
    party's level only while the far end has been quiet (below ``vad_floor_dbfs``) for as long as
    an echo lasts (``max_delay_ms`` + ``tail_ms``), and holds its gain otherwise: what is left of
    the echo is never what it adapts to.

    Each stage can be turned off: ``echo_cancellation=False`` skips the canceller (and its residual-echo
    suppressor); ``residual_echo_suppression=False`` keeps the linear canceller but applies no
    residual-echo gain; ``noise_suppression=False`` (or ``noise_attenuation_db=0``) applies no noise
    gain, while the noise estimate still feeds the VAD and the meters; ``gain_control=False`` leaves
    the level alone (no AGC, no limiter).
    """

    sample_rate: int = 16000
    echo_cancellation: bool = True
    tail_ms: int = 200
    max_delay_ms: int = 500
    residual_echo_floor_db: float = -40.0
    residual_echo_suppression: bool = True
    noise_suppression: bool = True
    noise_attenuation_db: float = 25.0
    gain_control: bool = True
    target_level_dbfs: float = -23.0
    vad_threshold: float = 0.3
    vad_floor_dbfs: float = -55.0


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """What one direction reports: the last VAD decision, the echo state, meters of the capture and
    the AGC gain in dB."""

    speech: bool
    echo: EchoReport
    meters: MeterReading
    agc_gain_db: float


class AudioPipeline:
    """Processes one call direction frame by frame (10 ms); output lags input by one frame."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config = config or PipelineConfig()
        if config.sample_rate not in SAMPLE_RATES:
            raise ValueError("sample_rate must be 16000 or 48000")
        core = CORE_RATE // 100
        self.frame = config.sample_rate // 100
        self.echo = EchoCanceller(CORE_RATE, config.tail_ms, config.max_delay_ms, config.residual_echo_floor_db)
        self.noise = NoiseSuppressor(CORE_RATE, config.noise_attenuation_db if config.noise_suppression else 0.0)
        self.vad = VoiceActivityDetector(CORE_RATE, self.noise.plan.size, config.vad_threshold)
        self.agc = GainControl(config.target_level_dbfs)
        self.meters = AudioMeters()
        self.speech = False
        self._echo_frames = (config.max_delay_ms + config.tail_ms) // 10
        self._echo_frames_left = 0
        """Frames until the far end's last sound can no longer be echoing in the capture."""
        self._vad_floor = core * 10.0 ** (config.vad_floor_dbfs / 10.0)  # a frame's energy
        self._unity: Real = np.ones(self.noise.plan.bins)
        use_residual = config.echo_cancellation and config.residual_echo_suppression
        self._echo_gain: Real = self.echo.residual_gain if use_residual else self._unity
        self._near_in: Real = np.zeros(self.frame)
        self._far_in: Real = np.zeros(self.frame)
        self._out: Real = np.zeros(self.frame)
        self._near: Real = np.zeros(core)
        self._far: Real = np.zeros(core)
        self._linear: Real = np.zeros(core)
        self._clean: Real = np.zeros(core)
        self._wide = config.sample_rate != CORE_RATE
        if self._wide:
            self._down_near = Decimator(self.frame)
            self._down_far = Decimator(self.frame)
            self._up_clean = Interpolator(core)
            self._up_near = Interpolator(core)
            self._clean_wide: Real = np.zeros(self.frame)
            self._low_wide: Real = np.zeros(self.frame)
            self._delay_line: Real = np.zeros(2 * DELAY_48K + self.frame)
            self._high: Real = np.zeros(self.frame)
            self._mixed: Real = np.zeros(self.frame)

    def process(self, near: Real, far: Real, out: Real) -> bool:
        """Process one frame of the capture ``near`` with ``far`` (the audio forwarded the other way,
        the echo reference) into ``out``; all float64 at normalized full scale 1.0 and the configured
        rate. Returns the VAD decision for the frame."""
        if self._wide:
            self._down_near.process(near, self._near)
            self._down_far.process(far, self._far)
            self._core(self._near, self._far)
            self._up_clean.process(self._clean, self._clean_wide)
            self._up_near.process(self._near, self._low_wide)
            merge_high_band(
                near, self._clean_wide, self._low_wide, self._delay_line, self._high,
                self.noise.gain, self._echo_gain, self._mixed,
            )  # fmt: skip
            self._finish(self._mixed, out)
        else:
            self._core(near, far)
            self._finish(self._clean, out)
        self.meters.process(near, self.speech)
        return self.speech

    def process_int16(self, near: Pcm, far: Pcm, out: Pcm) -> bool:
        """:meth:`process` for 16-bit PCM frames (int16 arrays of ``frame`` samples, e.g.
        ``np.frombuffer(data, np.int16)``); ``out`` gets rounded, saturated int16. Converts into
        buffers of the pipeline's own, so it allocates nothing either."""
        pcm_to_float(near, self._near_in)
        pcm_to_float(far, self._far_in)
        speech = self.process(self._near_in, self._far_in, self._out)
        float_to_pcm(self._out, out)
        return speech

    def _core(self, near: Real, far: Real) -> None:
        if self.config.echo_cancellation:
            self.echo.process(near, far, self._linear)
            self.noise.process(self._linear, self._clean, self._echo_gain)
        else:
            self.noise.process(near, self._clean, self._unity)
        voiced = self.vad.process(self.noise.prior_snr, self.noise.post_snr)
        kept = float(np.dot(self._clean, self._clean))
        self.speech = voiced and kept > self._vad_floor and kept > _MOSTLY_REMOVED * float(np.dot(near, near))
        if self.config.echo_cancellation and float(np.dot(far, far)) > self._vad_floor:
            self._echo_frames_left = self._echo_frames
        else:
            self._echo_frames_left = max(0, self._echo_frames_left - 1)

    def _finish(self, signal: Real, out: Real) -> None:
        if self.config.gain_control:
            self.agc.process(signal, out, self.speech and self._echo_frames_left == 0)
        else:
            out[:] = signal

    def stats(self) -> PipelineStats:
        """A snapshot of this direction's reports (resets the peak meter)."""
        return PipelineStats(
            speech=self.speech,
            echo=self.echo.report,
            meters=self.meters.reading(10.0 * math.log10(self.noise.noise_power + 1e-12)),
            agc_gain_db=self.agc.gain_db,
        )


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def pcm_to_float(pcm: Pcm, out: Real) -> None:
    """int16 samples -> float64 at normalized full scale 1.0 (divided by 32768)."""
    for i in range(pcm.shape[0]):
        out[i] = pcm[i] * _PCM_SCALE


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def float_to_pcm(x: Real, pcm: Pcm) -> None:
    """float64 at normalized full scale 1.0 -> int16, rounded and saturated."""
    for i in range(x.shape[0]):
        v = min(max(x[i] * 32768.0, -32768.0), 32767.0) if math.isfinite(x[i]) else 0.0
        pcm[i] = np.int16(round(v))


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def merge_high_band(
    near: Real, clean_wide: Real, low_wide: Real, delay_line: Real, high: Real, noise_gain: Real,
    echo_gain: Real, out: Real,
) -> None:  # fmt: skip
    """``out`` = processed 16 kHz band + gated 8-24 kHz band of ``near``, aligned.

    The high band is the input delayed by the two conversions minus its own low band; it is held one
    frame to match the suppressor's latency, and scaled by the mean gain of the top of the low band.
    """
    frame = near.shape[0]
    lag = delay_line.shape[0] - frame
    for i in range(frame):
        delay_line[lag + i] = near[i]
    bins = noise_gain.shape[0]
    start = int(bins * _HIGH_BAND_FROM)
    gain = 0.0
    for k in range(start, bins):
        gain += noise_gain[k] * echo_gain[k]
    gain /= bins - start
    for i in range(frame):
        out[i] = clean_wide[i] + gain * high[i]
        high[i] = delay_line[i] - low_wide[i]
    for i in range(lag):
        delay_line[i] = delay_line[frame + i]


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel by running each configuration once.

    Call at worker start so that no call pays for compilation on its first frame.
    """
    for rate in SAMPLE_RATES:
        pipeline = AudioPipeline(PipelineConfig(sample_rate=rate))
        frame = np.zeros(rate // 100)
        out = np.zeros_like(frame)
        pipeline.process(frame, frame, out)
        pcm = np.zeros(rate // 100, dtype=np.int16)
        pipeline.process_int16(pcm, pcm, pcm)
        pipeline.stats()
    AudioPipeline(PipelineConfig(echo_cancellation=False, gain_control=False)).process(
        np.zeros(CORE_RATE // 100), np.zeros(CORE_RATE // 100), np.zeros(CORE_RATE // 100)
    )
