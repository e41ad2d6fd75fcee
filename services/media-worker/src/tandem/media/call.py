"""One call on a worker: a WebRTC leg to each party, media relayed between them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from tandem.common.aio import TaskSet
from tandem.common.errors import TandemError
from tandem.media.quality import CallQuality
from tandem.media.relay import RelayTrack, pump
from tandem.v1 import client_pb2, common_pb2, media_pb2

logger = logging.getLogger(__name__)

Leg: TypeAlias = media_pb2.Leg.ValueType
LEGS: tuple[Leg, Leg] = (media_pb2.LEG_SHOPPER, media_pb2.LEG_HOST)
KINDS = ("audio", "video")


def other(leg: Leg) -> Leg:
    return media_pb2.LEG_HOST if leg == media_pb2.LEG_SHOPPER else media_pb2.LEG_SHOPPER


@dataclass
class LegState:
    pc: RTCPeerConnection | None = None
    first_media: asyncio.Event = field(default_factory=asyncio.Event)
    connected: bool = False


EventSink = Callable[[Leg, "media_pb2.MediaEvent.Kind.ValueType"], None]


class MediaCall:
    """Terminates both legs. Frames from leg A's tracks go into relays that leg B sends."""

    def __init__(
        self, call_id: str, config: RTCConfiguration, frame_queue: int, on_event: EventSink, quality: CallQuality
    ) -> None:
        self.call_id = call_id
        self.quality = quality
        self._config = config
        self._on_event = on_event
        self.legs = {leg: LegState() for leg in LEGS}
        # relays[(from_leg, kind)] carries leg from_leg's media to the other leg.
        self.relays = {(leg, kind): RelayTrack(kind, frame_queue) for leg in LEGS for kind in KINDS}
        self._tasks = TaskSet(f"call-{call_id}")
        self.closed = False

    async def answer(self, leg: Leg, offer_sdp: str) -> str:
        """Accept a leg's SDP offer and return the worker's answer (all candidates included)."""
        state = self.legs[leg]
        if self.closed:
            raise TandemError("the call has ended", code=common_pb2.ERROR_CODE_INVALID_STATE)
        if state.pc is not None:
            raise TandemError("this leg already negotiated", code=common_pb2.ERROR_CODE_INVALID_STATE)
        pc = state.pc = RTCPeerConnection(self._config)

        @pc.on("track")
        def on_track(track: RelayTrack) -> None:
            first = asyncio.Event()
            self._tasks.spawn(pump(self.quality.observed(leg, track), self.relays[(leg, track.kind)], first))
            self._tasks.spawn(self._report_first_media(leg, first))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and not state.connected:
                state.connected = True
                self._on_event(leg, media_pb2.MediaEvent.KIND_LEG_CONNECTED)
            elif pc.connectionState == "failed":
                self._on_event(leg, media_pb2.MediaEvent.KIND_LEG_FAILED)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            offered = {t.kind for t in pc.getTransceivers()}
            if not offered & set(KINDS):
                raise ValueError("no audio or video in the offer")
        except (ValueError, KeyError, IndexError) as exc:
            state.pc = None
            await pc.close()
            raise TandemError(f"invalid SDP offer: {exc}", code=common_pb2.ERROR_CODE_INVALID_ARGUMENT) from None
        for kind in KINDS:
            if kind in offered:
                pc.addTrack(self.relays[(other(leg), kind)])
        await pc.setLocalDescription(await pc.createAnswer())
        self.quality.attach(leg, pc)
        return pc.localDescription.sdp

    async def _report_first_media(self, leg: Leg, first: asyncio.Event) -> None:
        state = self.legs[leg]
        await first.wait()
        if not state.first_media.is_set():
            state.first_media.set()
            self._on_event(leg, media_pb2.MediaEvent.KIND_FIRST_MEDIA)

    async def add_candidate(self, leg: Leg, candidate: client_pb2.IceCandidate) -> None:
        pc = self.legs[leg].pc
        if pc is None:
            raise TandemError("candidate before offer", code=common_pb2.ERROR_CODE_INVALID_STATE)
        if candidate.end_of_candidates or not candidate.candidate:
            return
        try:
            ice = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
        except (ValueError, IndexError):
            raise TandemError("invalid ICE candidate", code=common_pb2.ERROR_CODE_INVALID_ARGUMENT) from None
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        await pc.addIceCandidate(ice)

    @property
    def offered(self) -> bool:
        return all(state.pc is not None for state in self.legs.values())

    async def close(self) -> None:
        """Release everything; idempotent."""
        if self.closed:
            return
        self.closed = True
        await self.quality.close()
        for relay in self.relays.values():
            relay.push(None)
        await self._tasks.cancel_all()
        for state in self.legs.values():
            if state.pc is not None:
                await state.pc.close()
