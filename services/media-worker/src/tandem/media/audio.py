"""Call audio processed in the packet path: Opus decode, the call-audio DSP, Opus encode.

The DSP runs at 48 kHz (full band) or 16 kHz (wide band: the canceller and suppressor work at
16 kHz either way; about half the cost, nothing above 8 kHz is sent). Packet for packet: each
received 20 ms Opus packet becomes one processed packet with the same sequence number and
timestamp, so the receiving party sees the sender's timing and losses (its own jitter buffer and
loss concealment do the rest) and the worker adds no jitter buffer of its own.
The echo canceller of a direction takes as reference the audio the worker sent to that party,
paired with the party's capture by the two streams' RTP timestamps (:class:`EchoReference`).
"""

from __future__ import annotations

import fractions
import math

import av
import numpy as np
from aiortc.rtp import RtpPacket
from av.audio.codeccontext import AudioCodecContext
from prometheus_client import Counter

from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig

AUDIO_FRAMES_PROCESSED = Counter(
    "tandem_media_audio_frames_processed_total", "10 ms audio frames through the call-audio DSP"
)
AUDIO_PACKETS_UNPROCESSED = Counter(
    "tandem_media_audio_packets_unprocessed_total", "Audio packets a processed direction forwarded as they were"
)

OPUS_RATE = 48000
"""The rate libopus decodes WebRTC's Opus at (Hz)."""
PACKET_MS = 20
"""The Opus packet duration the processor handles (WebRTC's default); others pass unprocessed."""
FULL_SCALE = 32768.0


class OpusDecoder:
    """Opus packets to mono float64 PCM (full scale 1.0) at ``rate``: libopus decodes WebRTC's Opus
    at 48 kHz, resampled when the DSP runs at 16 kHz (the resampler's start-up delay is padded)."""

    def __init__(self, rate: int) -> None:
        codec = av.CodecContext.create("libopus", "r")
        assert isinstance(codec, AudioCodecContext)
        codec.sample_rate = OPUS_RATE
        codec.layout = "mono"
        codec.format = "s16"
        self._codec = codec
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate) if rate != OPUS_RATE else None
        self._packet_samples = rate * PACKET_MS // 1000

    def decode(self, payload: bytes) -> np.ndarray:
        """The packet's audio; empty when it does not decode (the receiving party conceals it)."""
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.FFmpegError:
            return np.zeros(0)
        if self._resampler is not None:
            frames = [out for frame in frames for out in self._resampler.resample(frame)]
        if not frames:
            return np.zeros(0)
        pcm = np.concatenate([f.to_ndarray()[0] for f in frames]) / FULL_SCALE
        if 0 < len(pcm) < self._packet_samples and self._resampler is not None:
            pcm = np.concatenate([np.zeros(self._packet_samples - len(pcm)), pcm])
        return pcm


class RtpClock:
    """A stream's 32-bit RTP timestamps unwrapped into one count from its first (0)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._unwrapped = 0

    def unwrap(self, timestamp: int) -> int:
        if self._last is not None:
            self._unwrapped += (timestamp - self._last + (1 << 31)) % (1 << 32) - (1 << 31)
        self._last = timestamp
        return self._unwrapped


class EchoReference:
    """The audio sent to a party, on its own timeline, to be paired with that party's capture.

    Both streams are timed by their senders' clocks (RTP timestamps): what the party's loudspeaker
    played at a moment and what its microphone took at that moment sit a steady distance apart on
    the two timelines (the network, the party's jitter buffer and device). Pairing follows the
    timestamps, so packets arriving in bursts on either leg never shift the reference against the
    capture; the echo canceller's delay estimator sees only the party's own delay and its changes.
    The distance is set by arrival over the first ``settle_ms`` of capture: a capture frame is
    paired with no reference newer than what had been sent when it arrived (the distance lowered
    whenever one arrives earlier than that), and then kept, so a pause in what is sent (the other
    party muted) does not move it. What was not sent (lost, not yet, or older than ``span_ms``) is
    silence.
    """

    def __init__(self, rate: int, span_ms: int = 2000, settle_ms: int = 1000) -> None:
        self._frame = rate // 100
        self._settle_frames = settle_ms // 10
        self._ticks_per_frame = OPUS_RATE // 100  # RTP runs at 48 kHz for Opus
        slots = span_ms // 10
        self._audio = np.zeros((slots, self._frame))
        self._index = np.full(slots, -1, dtype=np.int64)
        self._sent = RtpClock()
        self._captured = RtpClock()
        self._newest = -1
        self._offset: int | None = None

    def push(self, pcm: np.ndarray, timestamp: int) -> None:
        """Audio sent to the party (float64 at full scale 1.0) with its RTP timestamp."""
        first = round(self._sent.unwrap(timestamp) / self._ticks_per_frame)
        for k in range(len(pcm) // self._frame):
            index = first + k
            slot = index % len(self._index)
            self._audio[slot] = pcm[k * self._frame : (k + 1) * self._frame]
            self._index[slot] = index
            self._newest = max(self._newest, index)

    def take(self, out: np.ndarray, timestamp: int) -> None:
        """The reference for the capture frame with RTP timestamp ``timestamp`` into ``out``."""
        captured = round(self._captured.unwrap(timestamp) / self._ticks_per_frame)
        if self._newest < 0:
            out[:] = 0.0
            return
        offset = self._offset
        if offset is None or (captured < self._settle_frames and captured + offset > self._newest):
            offset = self._offset = self._newest - captured
        index = captured + offset
        slot = index % len(self._index)
        if self._index[slot] == index:
            out[:] = self._audio[slot]
        else:
            out[:] = 0.0


class ReferenceDecoder:
    """Decodes forwarded packets only to feed an echo reference (the direction itself is not processed)."""

    def __init__(self, rate: int, reference: EchoReference) -> None:
        self._decoder = OpusDecoder(rate)
        self.reference = reference

    def observe(self, packet: RtpPacket) -> None:
        pcm = self._decoder.decode(packet.payload)
        if len(pcm):
            self.reference.push(pcm, packet.timestamp)


class AudioProcessor:
    """One direction's processing: the party's capture in, the cleaned audio out, packet for packet."""

    def __init__(self, config: PipelineConfig, bitrate_bps: int, complexity: int) -> None:
        rate = config.sample_rate
        self.pipeline = AudioPipeline(config)
        self.reference = EchoReference(rate)
        """What the worker sends this party (the far end), for the echo canceller."""
        self.sent_to_other: EchoReference | None = None
        """The other direction's reference: this direction's output is what that party hears."""
        self._decoder = OpusDecoder(rate)
        encoder = av.CodecContext.create("libopus", "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate = rate
        encoder.layout = "mono"
        encoder.format = "s16"
        encoder.bit_rate = bitrate_bps
        encoder.time_base = fractions.Fraction(1, rate)
        encoder.options = {"application": "voip", "compression_level": str(complexity)}
        self._encoder = encoder
        self._frame = rate // 100
        self._packet_samples = rate * PACKET_MS // 1000
        self._near = np.zeros(self._frame)
        self._far = np.zeros(self._frame)
        self._out = np.zeros(self._packet_samples)
        self._pts = 0

    def process(self, packet: RtpPacket) -> RtpPacket:
        """``packet`` with its payload replaced by the processed audio (the packet object is reused)."""
        pcm = self._decoder.decode(packet.payload)
        if len(pcm) != self._packet_samples:
            AUDIO_PACKETS_UNPROCESSED.inc()
            return packet
        for k, start in enumerate(range(0, self._packet_samples, self._frame)):
            self._near[:] = pcm[start : start + self._frame]
            self.reference.take(self._far, packet.timestamp + k * OPUS_RATE // 100)
            self.pipeline.process(self._near, self._far, self._out[start : start + self._frame])
        AUDIO_FRAMES_PROCESSED.inc(self._packet_samples // self._frame)
        if self.sent_to_other is not None:
            self.sent_to_other.push(self._out.copy(), packet.timestamp)
        samples = np.clip(self._out * FULL_SCALE, -FULL_SCALE, FULL_SCALE - 1).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._encoder.sample_rate
        frame.pts = self._pts
        self._pts += self._packet_samples
        encoded = self._encoder.encode(frame)
        if not encoded:
            return packet
        packet.payload = bytes(encoded[0])
        packet.extensions.audio_level = (self.pipeline.speech, audio_level(self._out))
        return packet


def audio_level(pcm: np.ndarray) -> int:
    """RFC 6464 level: -dBov of the frame's RMS, 0 (loudest) to 127 (silence)."""
    rms = math.sqrt(float(np.dot(pcm, pcm)) / max(1, len(pcm)))
    return 127 if rms <= 0 else min(127, max(0, round(-20.0 * math.log10(rms))))
