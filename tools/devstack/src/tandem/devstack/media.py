"""Synthetic media for bots: a tone and a moving test pattern, paced in real time."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms


class ToneTrack(AudioStreamTrack):
    """A sine tone at `frequency_hz` (different per bot, so a test can tell who it hears)."""

    def __init__(self, frequency_hz: float) -> None:
        super().__init__()
        self.frequency_hz = frequency_hz
        self._sent = 0
        self._start = 0.0

    async def recv(self) -> AudioFrame:
        if self._sent == 0:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent / SAMPLE_RATE - time.monotonic()))
        t = (np.arange(FRAME_SAMPLES) + self._sent) / SAMPLE_RATE
        samples = (0.3 * 32767 * np.sin(2 * np.pi * self.frequency_hz * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


class PatternTrack(VideoStreamTrack):
    """A 320x240 frame with a bar that moves one step per frame, at 30 fps."""

    def __init__(self, shade: int) -> None:
        super().__init__()
        self.shade = shade
        self._n = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((240, 320, 3), self.shade, dtype=np.uint8)
        x = (self._n * 4) % 320
        image[:, x : x + 16] = 255
        self._n += 1
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame
