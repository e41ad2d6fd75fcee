"""The transcoding relay: frames aiortc decoded on one leg, re-encoded by the other leg's sender.

Used for a direction whose legs share no codec (and for every direction when forwarding is off).

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
from prometheus_client import Counter

logger = logging.getLogger(__name__)

FRAMES_DECODED = Counter("tandem_media_frames_decoded_total", "Frames the worker decoded to relay them", ["kind"])


class RelayTrack(MediaStreamTrack):
    """A track whose frames are pushed by a pump on the other leg."""

    def __init__(self, kind: str, max_frames: int) -> None:
        super().__init__()
        self.kind = kind
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=max_frames)
        self.dropped = 0
        self.first_frame = asyncio.Event()
        """Set when the first frame is pushed."""
        self.held = False
        """Pre-connect: frames pushed are dropped (the host has not accepted yet)."""

    def push(self, frame: Frame | None) -> None:
        """Queue a frame (None ends the track), dropping the oldest when full."""
        if frame is not None:
            if self.held:
                return
            self.first_frame.set()
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


async def pump(source: MediaStreamTrack, sink: RelayTrack) -> None:
    """Copy frames from a received track into a relay until the source ends."""
    decoded = FRAMES_DECODED.labels(source.kind)
    try:
        while True:
            frame = await source.recv()
            if isinstance(frame, Frame):  # received tracks yield decoded frames
                decoded.inc()
                sink.push(frame)
    except MediaStreamError:
        sink.push(None)
