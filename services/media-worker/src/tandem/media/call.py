"""One call on a worker: a WebRTC leg to each party, media passed between them.

Once both legs have answered, each direction of each kind is either forwarded encoded (the two legs
agreed on its codec: see :mod:`tandem.media.forwarding`; audio through the call-audio DSP when
processing is on for it) or, when they did not, relayed through aiortc's decoder and encoder.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp
from av.frame import Frame
from prometheus_client import Counter

from tandem.common.aio import TaskSet, cancel_and_wait
from tandem.media.audio import AudioProcessor, ReferenceDecoder
from tandem.media.dsp.pipeline import PipelineConfig
from tandem.media.errors import (
    CandidateBeforeOfferError,
    InvalidCandidateError,
    InvalidOfferError,
    LegAlreadyNegotiatedError,
    MediaCallEndedError,
)
from tandem.media.forwarding import Direction, ForwardingLimits, Inbound, LegRtp, Negotiated, Outbound
from tandem.media.legs import LEGS, Leg, other
from tandem.media.quality import CallQuality
from tandem.media.relay import RelayTrack, pump
from tandem.media.seams import TransportHooks, leg_transports, sender_ssrcs
from tandem.v1 import client_pb2, media_pb2

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
VIDEO_CODECS = ("video/vp8", "video/h264")
"""Video codecs offered in the answer, in order of preference (both can be forwarded)."""

DIRECTIONS = Counter("tandem_media_directions_total", "Call directions by kind and path", ["kind", "path"])
LEG_RESTARTS = Counter("tandem_media_leg_restarts_total", "Legs whose party offered a new transport mid-call")

_CANDIDATE = re.compile(
    r"(candidate:)?[A-Za-z0-9+/]{1,32} \d{1,3} (udp|tcp|UDP|TCP) \d{1,10} \S{1,255} \d{1,5} typ "
    r"(host|srflx|prflx|relay)( \S{1,255})*"
)
"""An SDP ``candidate`` attribute (RFC 8839 section 5.1), bounded field by field."""


EventSink = Callable[[Leg, "media_pb2.MediaEvent.Kind.ValueType", str], None]


@dataclass(frozen=True)
class CallOptions:
    """How a call's media is handled: forwarded or relayed, and the audio processing per party
    (``audio[leg]`` processes what that party says; None forwards it untouched)."""

    frame_queue: int = 4
    forward: bool = True
    limits: ForwardingLimits = field(default_factory=ForwardingLimits)
    audio: dict[Leg, PipelineConfig | None] = field(default_factory=dict)
    opus_bitrate_bps: int = 32000
    opus_complexity: int = 5
    held: bool = False
    """Pre-connect: nothing of one party reaches the other until :meth:`MediaCall.open`."""


class ForwardedTrack(MediaStreamTrack):
    """The track of a sender whose packets the worker writes itself: it never yields a frame, so
    aiortc's sender announces the SSRC and keeps its RTCP running but encodes nothing."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Frame:
        await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()


@dataclass
class LegState:
    pc: RTCPeerConnection | None = None
    connected: bool = False
    rtp: LegRtp = field(default_factory=LegRtp)
    negotiated: dict[str, Negotiated] = field(default_factory=dict)
    senders: dict[str, RTCRtpSender] = field(default_factory=dict)
    hooks: dict[str, TransportHooks] = field(default_factory=dict)
    """Kind -> the transport its media travels on."""
    remote: dict[str, MediaStreamTrack] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """What runs for this leg alone (its reports), cancelled when the leg is released."""
    offer_answer: tuple[str, str] | None = None
    """The offer this leg was negotiated with and the worker's answer to it."""


def video_preferences() -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    preferred = [c for mime in VIDEO_CODECS for c in codecs if c.mimeType.lower() == mime]
    return preferred + [c for c in codecs if is_rtx(c)]


class MediaCall:
    """Terminates both legs and passes each party's media to the other."""

    def __init__(
        self, call_id: str, config: RTCConfiguration, options: CallOptions, on_event: EventSink, quality: CallQuality
    ) -> None:
        self.call_id = call_id
        self.quality = quality
        self._config = config
        self.options = options
        self._on_event = on_event
        self.legs = {leg: LegState() for leg in LEGS}
        # relays[(from_leg, kind)] carries leg from_leg's decoded media to the other leg.
        self.relays = {(leg, kind): RelayTrack(kind, options.frame_queue) for leg in LEGS for kind in KINDS}
        self.opened = asyncio.Event()
        """Set while media may flow between the parties (at once, unless the call starts held)."""
        self._gate(held=options.held)
        self.directions: dict[tuple[Leg, str], Direction] = {}
        """(from_leg, kind) -> its forwarding, for the directions that are forwarded."""
        self.transcoded: set[tuple[Leg, str]] = set()
        self.processors: dict[Leg, AudioProcessor] = {}
        self.video_cap: int | None = None
        """The most each party is asked to send of video (bit/s) while the worker sheds load."""
        self._tasks = TaskSet(f"call-{call_id}")
        self.closed = False

    async def answer(self, leg: Leg, offer_sdp: str) -> str:
        """Accept a leg's SDP offer and return the worker's answer (all candidates included)."""
        state = self.legs[leg]
        if self.closed:
            raise MediaCallEndedError(self.call_id)
        if state.offer_answer is not None and state.offer_answer[0] == offer_sdp:
            return state.offer_answer[1]  # the same offer again (its first answer went astray): the same answer
        if state.pc is not None:
            raise LegAlreadyNegotiatedError(leg)
        offered = offered_kinds(offer_sdp)
        pc = state.pc = RTCPeerConnection(self._config)
        forward = self.options.forward
        for kind in sorted(offered):
            track = ForwardedTrack(kind) if forward else self.relays[(other(leg), kind)]
            transceiver = pc.addTransceiver(track, direction="sendrecv")
            if forward and kind == "video":
                transceiver.setCodecPreferences(video_preferences())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            state.remote[track.kind] = track
            if not forward:
                self._relay(leg, track.kind)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and not state.connected:
                state.connected = True
                self._on_event(leg, media_pb2.MediaEvent.KIND_LEG_CONNECTED, "")
            elif pc.connectionState == "failed":
                self._on_event(leg, media_pb2.MediaEvent.KIND_LEG_FAILED, "")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, KeyError, IndexError, OperationError, InvalidAccessError) as exc:
            state.pc = None
            await pc.close()
            raise invalid_offer(exc) from None
        await pc.setLocalDescription(await pc.createAnswer())
        self.quality.attach(leg, pc)
        if forward:
            self._hook(leg, pc)
            if self.offered:
                self._connect()
        else:
            self._tasks.spawn(self._report_first_media(leg, self._first_relayed_frame(leg)))
        state.offer_answer = (offer_sdp, pc.localDescription.sdp)
        return pc.localDescription.sdp

    def _hook(self, leg: Leg, pc: RTCPeerConnection) -> None:
        """Take the leg's decrypted traffic (per transport instance) and learn what it agreed."""
        state = self.legs[leg]
        answer = SessionDescription.parse(pc.localDescription.sdp)
        transceivers: dict[str, RTCRtpTransceiver] = {t.mid: t for t in pc.getTransceivers() if t.mid is not None}
        hooks = {
            id(dtls): TransportHooks(dtls, state.rtp.on_rtp, state.rtp.on_rtcp, state.rtp.outgoing_rtcp)
            for dtls in leg_transports([t.receiver for t in transceivers.values()])
        }
        state.rtp.hooks = list(hooks.values())
        for media in answer.media:
            transceiver = transceivers.get(media.rtp.muxId)
            if transceiver is None or media.kind not in KINDS or media.kind in state.negotiated:
                continue
            state.rtp.extensions.configure(RTCRtpParameters(headerExtensions=media.rtp.headerExtensions))
            state.negotiated[media.kind] = Negotiated(
                kind=media.kind, mid=media.rtp.muxId, codecs=[c for c in media.rtp.codecs if not is_rtx(c)],
                extension_ids={e.uri: e.id for e in media.rtp.headerExtensions},
                rtx={
                    int(str(c.parameters["apt"])): c.payloadType
                    for c in media.rtp.codecs
                    if is_rtx(c) and c.payloadType is not None
                },
            )  # fmt: skip
            state.senders[media.kind] = transceiver.sender
            state.hooks[media.kind] = hooks[id(transceiver.receiver.transport)]
            state.rtp.add_receiver(transceiver.receiver, media.kind)
        state.tasks += [
            self._tasks.spawn(self._report_first_media(leg, state.rtp.first_media)),
            self._tasks.spawn(state.rtp.run_reports(), name=f"rtcp-{leg}"),
        ]

    def _connect(self) -> None:
        """Both legs answered: forward what both agreed on, relay the rest."""
        for kind in KINDS:
            for source in LEGS:
                sink = other(source)
                into, out = self.legs[source], self.legs[sink]
                if kind not in into.negotiated or kind not in out.negotiated:
                    continue
                codec = into.negotiated[kind].send_codec
                if out.negotiated[kind].payload_type_for(codec) is None:
                    self._transcode(source, kind, f"{codec.mimeType} not accepted by the other party")
                    continue
                inbound = Inbound(into.hooks[kind], into.negotiated[kind], sender_ssrcs(into.senders[kind])[0])
                ssrc, rtx_ssrc = sender_ssrcs(out.senders[kind])
                # A kept leg's stream goes on where it was (its party's receiver and SRTP see one stream).
                outbound = out.rtp.outgoing.get(ssrc) or Outbound(
                    out.hooks[kind], out.rtp.extensions, out.negotiated[kind], ssrc, rtx_ssrc
                )
                direction = Direction(inbound, outbound, self.options.limits, self._tasks, held=self.held)
                if kind == "video":
                    direction.on_first_frame = partial(
                        self._on_event, sink, media_pb2.MediaEvent.KIND_FIRST_FRAME_SENT, ""
                    )
                    direction.cap_bitrate(self.video_cap)
                self.directions[(source, kind)] = direction
                into.rtp.incoming[kind] = direction
                out.rtp.outgoing[ssrc] = outbound
                self.quality.forwarded(source, kind, inbound, outbound)
                DIRECTIONS.labels(kind, "forwarded").inc()
        self._process_audio()

    def _process_audio(self) -> None:
        """Put the call-audio DSP on the forwarded audio directions where it is configured."""
        for leg in LEGS:
            config = self.options.audio.get(leg)
            direction = self.directions.get((leg, "audio"))
            if config is None or direction is None or direction.source.media.send_codec.name.lower() != "opus":
                continue
            self.processors[leg] = AudioProcessor(config, self.options.opus_bitrate_bps, self.options.opus_complexity)
        for leg, processor in self.processors.items():
            direction = self.directions[(leg, "audio")]
            direction.transform = processor.process
        for leg in LEGS:
            # The audio sent to a party whose capture is echo-cancelled is that canceller's reference.
            listener = self.processors.get(other(leg))
            direction = self.directions.get((leg, "audio"))
            if listener is None or direction is None or not listener.pipeline.config.echo_cancellation:
                continue
            if leg in self.processors:
                self.processors[leg].sent_to_other = listener.reference
            else:
                rate = listener.pipeline.config.sample_rate
                direction.transform = observing(ReferenceDecoder(rate, listener.reference))

    def _transcode(self, source: Leg, kind: str, why: str) -> None:
        """Relay one direction through aiortc's decoder and encoder (the legs share no codec)."""
        sink = other(source)
        self.legs[source].rtp.delivered.add(kind)
        self.legs[sink].senders[kind].replaceTrack(self.relays[(source, kind)])
        self._relay(source, kind)
        self.transcoded.add((source, kind))
        DIRECTIONS.labels(kind, "transcoded").inc()
        logger.warning("direction transcoded", extra={"call_id": self.call_id, "kind": kind, "reason": why})
        if kind == "video":
            self._on_event(source, media_pb2.MediaEvent.KIND_VIDEO_TRANSCODED, why)

    def _relay(self, source: Leg, kind: str) -> None:
        track = self.legs[source].remote.get(kind)
        if track is not None:
            self._tasks.spawn(pump(self.quality.observed(source, track), self.relays[(source, kind)]))

    def _first_relayed_frame(self, leg: Leg) -> asyncio.Event:
        first = asyncio.Event()
        for kind in KINDS:
            self.relays[(leg, kind)].first_frame = first
        return first

    async def _report_first_media(self, leg: Leg, first: asyncio.Event) -> None:
        await first.wait()
        self._on_event(leg, media_pb2.MediaEvent.KIND_FIRST_MEDIA, "")

    @property
    def held(self) -> bool:
        """Pre-connect: nothing of one party reaches the other until :meth:`open`."""
        return not self.opened.is_set()

    def _gate(self, *, held: bool) -> None:
        if held:
            self.opened.clear()
        else:
            self.opened.set()
        for relay in self.relays.values():
            relay.held = held

    def open(self) -> None:
        """The host accepted: forward both parties' media from now on (idempotent)."""
        self._gate(held=False)
        for direction in self.directions.values():
            direction.open()

    def shed_video(self, bitrate: int | None) -> None:
        """Ask both parties to send at most ``bitrate`` bit/s of video (None: lift it). Audio is
        never limited: a call under load loses picture quality first, never the voice."""
        self.video_cap = bitrate
        for (_, kind), direction in self.directions.items():
            if kind == "video":
                direction.cap_bitrate(bitrate)

    async def restart_leg(self, leg: Leg, offer_sdp: str) -> str:
        """A party's network changed: the offer of its new peer connection replaces the leg's
        transport (new ICE and DTLS; aiortc cannot restart ICE in place). The other party's leg
        stays; the call stays open (or held) as it was, and asks both senders for a keyframe."""
        offered_kinds(offer_sdp)  # a malformed offer leaves the leg as it was
        held = self.held
        await self.release_leg(leg)
        LEG_RESTARTS.inc()
        answer = await self.answer(leg, offer_sdp)
        if not held:
            self.open()
        return answer

    async def release_leg(self, leg: Leg) -> None:
        """Close one party's leg (a ringing host who did not take the call), keeping the other's
        connected for whoever is asked next; the call is held again until then."""
        state = self.legs[leg]
        if self.closed or state.pc is None:
            return
        self.legs[leg] = LegState()
        self.quality.detach(leg)
        # Every direction runs between the two legs: all go, and come back when the leg is offered again.
        self.directions.clear()
        self.processors.clear()
        self.transcoded.clear()
        kept = self.legs[other(leg)]
        kept.rtp.incoming.clear()  # its streams to this party go; those it receives stay, to go on
        self._gate(held=True)
        await cancel_and_wait(*state.tasks)
        await state.pc.close()

    async def add_candidate(self, leg: Leg, candidate: client_pb2.IceCandidate) -> None:
        pc = self.legs[leg].pc
        if pc is None:
            raise CandidateBeforeOfferError(leg)
        if candidate.end_of_candidates or not candidate.candidate:
            return
        if _CANDIDATE.fullmatch(candidate.candidate) is None:
            raise InvalidCandidateError(
                "expected 'candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>'"
            )
        try:
            ice = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
        except (ValueError, IndexError):
            raise InvalidCandidateError from None
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        if ice.ip.endswith(".local"):
            # An mDNS name (browsers hide their addresses so) takes up to a second to resolve: do it
            # beside the call, so neither this reply nor the party's next candidate waits for it.
            self._tasks.spawn(pc.addIceCandidate(ice), name=f"mdns-{leg}")
            return
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
            for hooks in state.rtp.hooks:
                hooks.close()


def invalid_offer(exc: Exception) -> InvalidOfferError:
    return InvalidOfferError(str(exc))


def offered_kinds(offer_sdp: str) -> set[str]:
    """The media kinds an offer brings that the worker handles; `InvalidOfferError` if none."""
    try:
        offered = {media.kind for media in SessionDescription.parse(offer_sdp).media} & set(KINDS)
    except (ValueError, KeyError, IndexError) as exc:
        raise invalid_offer(exc) from None
    if not offered:
        raise invalid_offer(ValueError("no audio or video in the offer"))
    return offered


def observing(decoder: ReferenceDecoder) -> Callable[[RtpPacket], RtpPacket]:
    """A transform that passes packets unchanged and decodes them into an echo reference."""

    def observe(packet: RtpPacket) -> RtpPacket:
        decoder.observe(packet)
        return packet

    return observe
