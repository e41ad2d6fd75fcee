"""The call of the echo benchmark (`tests/benchmarks/test_echo_call_bench.py`), over real WebRTC:
the host talks; the shopper's "microphone" picks up what the shopper's loudspeaker plays — the
host's voice as the worker sent it, delayed, filtered by a small room, attenuated and lightly
distorted — plus, later, the shopper's own voice. What the host hears of the shopper is measured
against the same call with the shopper's voice forwarded untouched.

Timeline (microphone seconds): far end only with the loudspeaker 150 ms behind (`JUMP_S`), then
300 ms behind (a device's buffer grew), then both talk from `DOUBLE_TALK_S`.
"""

from __future__ import annotations

import asyncio
import fractions
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from av import AudioFrame

from tests.unit.dsp.signals import si_sdr

Signal = npt.NDArray[np.float64]
RATE = 48000
FRAME = 960  # 20 ms
JUMP_S, DOUBLE_TALK_S, END_S = 8.0, 13.0, 18.0
DELAYS_MS = (150, 300)
ROOM = np.array([0.0] * 48 + [0.5] + [0.0] * 240 + [0.2] + [0.0] * 330 + [-0.1])
"""The loudspeaker-to-microphone path: a direct path 1 ms after the sound leaves, two reflections."""


def to_frame(samples: Signal, index: int) -> AudioFrame:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16).reshape(1, -1)
    frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = index * FRAME
    frame.time_base = fractions.Fraction(1, RATE)
    return frame


def to_mono(frame: AudioFrame) -> Signal:
    """A decoded frame (aiortc: interleaved s16, mono or stereo) as float mono."""
    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).astype(np.float64) / 32767
    return np.asarray(pcm.mean(axis=1), dtype=np.float64)


class PacedTrack(MediaStreamTrack):
    """Audio frames on the wall clock (every 20 ms from the first), as a capture device gives them."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.index = 0
        self._start: float | None = None

    def next_samples(self) -> Signal:
        raise NotImplementedError

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        await asyncio.sleep(max(0.0, self._start + self.index * FRAME / RATE - loop.time()))
        frame = to_frame(self.next_samples(), self.index)
        self.index += 1
        return frame


class Talk(PacedTrack):
    """A voice, then silence."""

    def __init__(self, voice: Signal) -> None:
        super().__init__()
        self.voice = voice

    def next_samples(self) -> Signal:
        chunk = self.voice[self.index * FRAME : (self.index + 1) * FRAME]
        return np.pad(chunk, (0, FRAME - len(chunk)))


class EchoingMicrophone(PacedTrack):
    """The shopper's microphone: their own voice (`near`) plus the echo of what their loudspeaker
    played (`play`, fed with what they hear)."""

    def __init__(self, near: Signal) -> None:
        super().__init__()
        self.near = near
        self.played = np.zeros(int((END_S + 5) * RATE))
        self.written = 0
        self.sent: list[Signal] = []
        self.echoes: list[Signal] = []

    def play(self, frame: AudioFrame) -> None:
        samples = to_mono(frame)[: len(self.played) - self.written]
        self.played[self.written : self.written + len(samples)] = samples
        self.written += len(samples)

    def next_samples(self) -> Signal:
        delay_ms = DELAYS_MS[0] if self.index * FRAME < JUMP_S * RATE else DELAYS_MS[1]
        end = self.written - delay_ms * RATE // 1000
        span = FRAME + len(ROOM) - 1
        heard = self.played[max(0, end - span) : max(0, end)]
        heard = np.pad(heard, (span - len(heard), 0))
        echo = np.tanh(2.0 * np.convolve(heard, ROOM, mode="valid")) / 2.0  # a loudspeaker near its limit
        start = self.index * FRAME
        near = np.pad(self.near[start : start + FRAME], (0, max(0, FRAME - len(self.near[start : start + FRAME]))))
        self.echoes.append(echo)
        self.sent.append(near + echo)
        return near + echo


@dataclass(frozen=True)
class EchoFigures:
    erle_before_jump_db: float
    erle_after_jump_db: float
    reconvergence_s: float | None
    """Seconds after the jump until the echo is back under the target (None: never)."""
    si_sdr_db: float
    si_sdr_baseline_db: float


def _energy(x: Signal) -> float:
    return float(np.sum(x**2)) + 1e-12


def lag_of(reference: Signal, heard: Signal, max_lag: int) -> int:
    """Samples by which `heard` runs behind `reference` (cross-correlation peak; negative when
    `heard` starts later into `reference`, its first frames lost before the call connected)."""
    n = 1 << int(np.ceil(np.log2(len(reference) + len(heard))))
    xcorr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(reference, n)), n)
    lags = np.concatenate([np.arange(max_lag), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(np.concatenate([xcorr[:max_lag], xcorr[n - max_lag :]]))])


@dataclass(frozen=True)
class Heard:
    """What the host heard of the shopper, on the shopper's microphone timeline."""

    audio: Signal
    near: Signal

    @classmethod
    def of(cls, mic: EchoingMicrophone, heard: Signal, near: Signal) -> Heard:
        """Aligned by the shopper's own voice (the part no processing removes)."""
        sent = np.concatenate(mic.sent)
        near = near[: len(sent)]
        lag = lag_of(near, heard, RATE)
        shifted = heard[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), heard])
        return cls(np.pad(shifted[: len(sent)], (0, max(0, len(sent) - len(shifted)))), near)

    def level(self, start_s: float, end_s: float) -> float:
        return _energy(self.audio[int(start_s * RATE) : int(end_s * RATE)])


def compare(processed: Heard, baseline: Heard, target_db: float) -> EchoFigures:
    """The echo the host heard with processing against without (ERLE), and the shopper's voice in
    double talk (SI-SDR at the host), both through the same codecs."""

    def erle(start_s: float, end_s: float) -> float:
        return float(10 * np.log10(baseline.level(start_s, end_s) / processed.level(start_s, end_s)))

    window = 0.5
    starts = (JUMP_S + k * 0.1 for k in range(int((DOUBLE_TALK_S - JUMP_S - window) / 0.1)))
    back = next((s + window - JUMP_S for s in starts if erle(s, s + window) >= target_db), None)
    a, b = int(DOUBLE_TALK_S * RATE), int(END_S * RATE)
    return EchoFigures(
        erle_before_jump_db=erle(3.0, JUMP_S),
        erle_after_jump_db=erle(JUMP_S + 2.5, DOUBLE_TALK_S),
        reconvergence_s=back,
        si_sdr_db=si_sdr(processed.near[a:b], processed.audio[a:b]),
        si_sdr_baseline_db=si_sdr(baseline.near[a:b], baseline.audio[a:b]),
    )
