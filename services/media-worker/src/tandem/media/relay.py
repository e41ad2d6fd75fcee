"""Relayed tracks: frames received on one leg, sent on the other.

The queue keeps the newest frames: when the receiving side falls behind, the oldest frames are
dropped rather than growing latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame

logger = logging.getLogger(__name__)


class RelayTrack(MediaStreamTrack):
    """A track whose frames are pushed by a pump on the other leg."""

    def __init__(self, kind: str, max_frames: int) -> None:
        super().__init__()
        self.kind = kind
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=max_frames)
        self.dropped = 0

    def push(self, frame: Frame | None) -> None:
        """Queue a frame (None ends the track), dropping the oldest when full."""
        if self._frames.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._frames.get_nowait()
                self.dropped += 1
        self._frames.put_nowait(frame)

    async def recv(self) -> Frame:
        frame = await self._frames.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


async def pump(source: MediaStreamTrack, sink: RelayTrack, on_first_frame: asyncio.Event) -> None:
    """Copy frames from a received track into a relay until the source ends."""
    try:
        while True:
            frame = await source.recv()
            if isinstance(frame, Frame):  # received tracks yield decoded frames
                on_first_frame.set()
                sink.push(frame)
    except MediaStreamError:
        sink.push(None)
