"""Frame-by-frame adapters around the peer engines the call-audio benchmark compares against.

Each adapter takes and returns float64 frames at normalized full scale (converting to the int16 the
peers speak, which is part of their measured cost, as it would be in the worker).
"""

from __future__ import annotations

import numpy as np
import webrtcvad
from pyrnnoise.rnnoise import create, process_frame
from pyspeex_noise import AudioProcessor as SpeexPreprocessor
from speexdsp import EchoCanceller as SpeexEchoCanceller
from webrtc_noise_gain import AudioProcessor as WebRtcProcessor

from dsp_material import Signal

_SCALE = 32767.0


def to_pcm(frame: Signal) -> bytes:
    """float64 frame -> int16 little-endian bytes (clipped)."""
    return np.clip(np.round(frame * _SCALE), -32768, 32767).astype(np.int16).tobytes()


def from_pcm(data: bytes) -> Signal:
    """int16 little-endian bytes -> float64 frame."""
    return np.frombuffer(data, dtype=np.int16).astype(np.float64) / _SCALE


class SpeexAec:
    """speexdsp's MDF echo canceller (no preprocessor, so no residual-echo suppression)."""

    def __init__(self, rate: int, tail_ms: int = 200) -> None:
        self.engine = SpeexEchoCanceller.create(rate // 100, rate * tail_ms // 1000, rate)

    def process(self, near: Signal, far: Signal) -> Signal:
        return from_pcm(self.engine.process(to_pcm(near), to_pcm(far)))


class SpeexNs:
    """Speex preprocessor noise suppression (-30 dB), AGC off; 16 kHz."""

    def __init__(self) -> None:
        self.engine = SpeexPreprocessor(0, -30)

    def process(self, frame: Signal) -> Signal:
        return from_pcm(self.engine.process_10ms(to_pcm(frame)))


class WebRtcNs:
    """WebRTC audio processing noise suppression (level 2 of 0-4), AGC off; 16 kHz."""

    def __init__(self) -> None:
        self.engine = WebRtcProcessor(0, 2)

    def process(self, frame: Signal) -> Signal:
        return from_pcm(self.engine.Process10ms(to_pcm(frame)).audio)


class RnNoise:
    """RNNoise at its native 48 kHz, 480-sample frames."""

    def __init__(self) -> None:
        self.states = [create()]

    def process(self, frame: Signal) -> Signal:
        pcm = np.clip(np.round(frame * _SCALE), -32768, 32767).astype(np.int16)[None, :]
        denoised, _ = process_frame(self.states, pcm)
        return np.asarray(denoised[0], dtype=np.float64) / _SCALE


class WebRtcVad:
    """webrtcvad in mode 2 (of 0-3)."""

    def __init__(self, rate: int, mode: int = 2) -> None:
        self.engine = webrtcvad.Vad(mode)
        self.rate = rate

    def process(self, frame: Signal) -> bool:
        return bool(self.engine.is_speech(to_pcm(frame), self.rate))
