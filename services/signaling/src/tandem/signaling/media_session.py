"""A call's media, as signaling sees it: a worker allocated in the region, each party's offer
answered by that worker, trickled candidates passed on, the worker released at the end."""

from __future__ import annotations

import logging

from google.protobuf import empty_pb2

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.signaling.callstate import Call
from tandem.v1 import client_pb2, common_pb2, media_pb2

logger = logging.getLogger(__name__)


class MediaSession:
    def __init__(self, bus: Bus, region: str, *, allocate_attempts: int, worker_timeout_s: float) -> None:
        self.bus = bus
        self.region = region
        self.allocate_attempts = allocate_attempts
        self.worker_timeout_s = worker_timeout_s

    async def allocate(self, call: Call, *, held: bool = False) -> str:
        """A worker for the call (its id), trying the region's workers up to `allocate_attempts` times;
        `held`: pre-connect, nothing passes between the parties until :meth:`open`."""
        subject = subjects.join(subjects.MEDIA_ALLOCATE, self.region)
        request = media_pb2.MediaAllocate(call_id=call.call_id, region=self.region, held=held)
        last: TandemError | None = None
        for _ in range(self.allocate_attempts):
            try:
                allocated = await self.bus.request(subject, request, media_pb2.MediaAllocated)
                return allocated.worker.worker_id
            except TandemError as exc:
                last = exc
        assert last is not None
        raise last

    async def offer(self, call: Call, leg: media_pb2.Leg.ValueType, sdp: str, *, restart: bool = False) -> str:
        """The worker's answer to a party's offer (`restart`: from a new peer connection, replacing
        the leg's transport)."""
        answer = await self.bus.request(
            subjects.join(subjects.MEDIA_WORKER, call.worker_id, "offer"),
            media_pb2.MediaOffer(call_id=call.call_id, leg=leg, sdp=sdp, restart=restart),
            media_pb2.MediaAnswer,
            timeout_s=self.worker_timeout_s,
        )
        return answer.sdp

    async def candidate(self, call: Call, leg: media_pb2.Leg.ValueType, candidate: client_pb2.IceCandidate) -> None:
        await self.bus.request(
            subjects.join(subjects.MEDIA_WORKER, call.worker_id, "candidate"),
            media_pb2.MediaCandidate(call_id=call.call_id, leg=leg, candidate=candidate),
            empty_pb2.Empty,
            timeout_s=self.worker_timeout_s,  # a worker busy starting a call's media answers late
        )

    async def open(self, call: Call) -> None:
        """The host accepted: the worker forwards both parties' media from now on."""
        await self.bus.request(
            subjects.join(subjects.MEDIA_WORKER, call.worker_id, "open"),
            media_pb2.MediaOpen(call_id=call.call_id),
            empty_pb2.Empty,
            timeout_s=self.worker_timeout_s,
        )

    async def release(
        self,
        call: Call,
        reason: common_pb2.EndReason.ValueType,
        leg: media_pb2.Leg.ValueType = media_pb2.LEG_UNSPECIFIED,
    ) -> None:
        """Free the call's worker, or only one leg on it; a worker that does not answer is
        logged, not retried."""
        if not call.worker_id:
            return
        try:
            await self.bus.request(
                subjects.join(subjects.MEDIA_WORKER, call.worker_id, "release"),
                media_pb2.MediaRelease(call_id=call.call_id, reason=reason, leg=leg),
                media_pb2.MediaRelease,
            )
        except TandemError as exc:
            logger.warning("media release failed", extra={"call_id": call.call_id, "error": str(exc)})
