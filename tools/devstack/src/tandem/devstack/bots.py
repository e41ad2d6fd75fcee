"""Bot clients that speak the client protocol and real WebRTC (aiortc): for `make demo`, the
end-to-end tests and the connect-time benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from google.protobuf import json_format

from tandem.common.errors import TandemError
from tandem.devstack.media import PatternTrack, ToneTrack
from tandem.v1 import client_pb2

Envelope = client_pb2.Envelope


async def dev_token(base_url: str, role: str, user: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/dev/token", params={"role": role, "user": user}) as resp,
    ):
        resp.raise_for_status()
        return str((await resp.json())["token"])


@dataclass
class MediaStats:
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    first_frame_at: dict[str, float] = field(default_factory=dict)
    last_frame_at: dict[str, float] = field(default_factory=dict)
    # The longest wait between two frames of a kind (seconds), since the last `reset_gaps`.
    longest_gap_s: dict[str, float] = field(default_factory=lambda: {"audio": 0.0, "video": 0.0})
    first_video: asyncio.Event = field(default_factory=asyncio.Event)
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, kind: str, at: float) -> None:
        self.frames[kind] += 1
        if kind not in self.first_frame_at:
            self.first_frame_at[kind] = at
            (self.first_video if kind == "video" else self.first_audio).set()
        if kind in self.last_frame_at:
            self.longest_gap_s[kind] = max(self.longest_gap_s[kind], at - self.last_frame_at[kind])
        self.last_frame_at[kind] = at

    def reset_gaps(self) -> None:
        self.longest_gap_s = {"audio": 0.0, "video": 0.0}


class Bot:
    """One client: a WebSocket to signaling and, once a call connects, a peer connection."""

    def __init__(
        self, base_url: str, token: str, *, binary: bool = False, name: str = "bot", traceparent: str = ""
    ) -> None:
        self.ws_url = base_url.replace("http", "ws", 1) + "/v1/ws"
        # Like an app with tracing on: every frame carries this W3C trace context.
        self.traceparent = traceparent
        self.token = token
        self.binary = binary
        self.name = name
        self.inbox: list[Envelope] = []
        self._arrived = asyncio.Condition()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.pc: RTCPeerConnection | None = None
        self.media = MediaStats()
        self._pumps: list[asyncio.Task[None]] = []
        self.marks: dict[str, float] = {}
        self.welcome: client_pb2.Welcome | None = None

    async def connect(self, resume_call_id: str = "") -> client_pb2.Welcome:
        """Open the socket and say hello (resuming a call, like an app after a network change)."""
        self._http = self._http or aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.ws_url)
        self._reader = asyncio.create_task(self._read())
        hello = client_pb2.Hello(token=self.token, client=f"tandem-bot/{self.name}", resume_call_id=resume_call_id)
        await self.send(hello=hello)
        first = await self.expect("welcome", "error")
        if first.HasField("error"):
            raise TandemError.from_proto(first.error)
        self.welcome = first.welcome
        return first.welcome

    @property
    def disconnected(self) -> bool:
        return self._ws is None or self._ws.closed

    async def reconnect(self, base_url: str, resume_call_id: str) -> client_pb2.Welcome:
        """A new socket to `base_url` (any signaling instance) that resumes the call; the peer
        connection to the media worker is kept."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._reader
        self.ws_url = base_url.replace("http", "ws", 1) + "/v1/ws"
        return await self.connect(resume_call_id)

    async def send_raw(self, frame: str | bytes) -> None:
        assert self._ws is not None
        await (self._ws.send_bytes(frame) if isinstance(frame, bytes) else self._ws.send_str(frame))

    async def send(self, **payload: Any) -> str:
        envelope = Envelope(id=str(uuid.uuid4()), traceparent=self.traceparent, **payload)
        frame = envelope.SerializeToString() if self.binary else json_format.MessageToJson(envelope, indent=None)
        await self.send_raw(frame)
        return envelope.id

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            envelope = Envelope()
            if msg.type == aiohttp.WSMsgType.BINARY:
                envelope.ParseFromString(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                json_format.Parse(msg.data, envelope)
            else:
                continue
            async with self._arrived:
                self.inbox.append(envelope)
                self._arrived.notify_all()

    async def expect(self, *kinds: str, timeout_s: float = 10.0, **fields: Any) -> Envelope:
        """Wait for (and consume) the first unread frame with one of these payloads whose fields match."""

        def find() -> Envelope | None:
            for i, envelope in enumerate(self.inbox):
                kind = envelope.WhichOneof("payload")
                if kind not in kinds:
                    continue
                payload = getattr(envelope, kind)
                if all(getattr(payload, k) == v for k, v in fields.items()):
                    return self.inbox.pop(i)
            return None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self._arrived:
            while (found := find()) is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    seen = [e.WhichOneof("payload") for e in self.inbox]
                    raise TimeoutError(f"{self.name}: no {kinds} {fields} within {timeout_s} s; unread: {seen}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
        return found

    async def start_media(self, call_id: str, *, tone_hz: float, shade: int, restart: bool = False) -> None:
        """Offer audio and video to the call's media worker and apply its answer (`restart`: in
        place of a transport negotiated before)."""
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._pumps.append(asyncio.create_task(self._count(track)))

        pc.addTrack(ToneTrack(tone_hz))
        pc.addTrack(PatternTrack(shade))
        await pc.setLocalDescription(await pc.createOffer())
        offer = client_pb2.SessionDescription(
            call_id=call_id,
            type=client_pb2.SessionDescription.TYPE_OFFER,
            sdp=pc.localDescription.sdp,
            restart=restart,
        )
        request_id = await self.send(sdp=offer)
        answer = await self.expect("sdp", call_id=call_id, timeout_s=15)
        assert answer.correlation_id == request_id
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp.sdp, type="answer"))

    async def restart_media(self, call_id: str, *, tone_hz: float, shade: int, restart: bool = False) -> None:
        """A new peer connection and a new offer on the same call: after `renegotiate`, or with
        `restart` when the network changed."""
        for pump in self._pumps:
            pump.cancel()
        self._pumps.clear()
        if self.pc is not None:
            await self.pc.close()
        await self.start_media(call_id, tone_hz=tone_hz, shade=shade, restart=restart)

    async def _count(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.media.arrived(kind, time.monotonic())

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()
