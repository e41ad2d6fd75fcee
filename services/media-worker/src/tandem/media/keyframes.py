"""Keyframes seen in RTP payloads, without decoding: where a forwarded video stream may start."""

from __future__ import annotations

from collections.abc import Callable

from aiortc.codecs.vpx import VpxPayloadDescriptor

KeyframeTest = Callable[[bytes], bool]

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def vp8_keyframe_start(payload: bytes) -> bool:
    """The first packet of a VP8 keyframe: start of partition 0 and the frame header's P bit clear
    (RFC 7741 sections 4.2 and 4.3)."""
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    return bool(descriptor.partition_start and descriptor.partition_id == 0 and rest and not rest[0] & 1)


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """Width and height (pixels) from the first packet of a VP8 keyframe: its 10-byte frame
    header holds them after the start code 9d 01 2a (RFC 6386 section 9.1); None for any other packet."""
    if not vp8_keyframe_start(payload):
        return None
    _, rest = VpxPayloadDescriptor.parse(payload)
    if len(rest) < 10 or rest[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(rest[6:8], "little") & 0x3FFF, int.from_bytes(rest[8:10], "little") & 0x3FFF


def h264_keyframe_start(payload: bytes) -> bool:
    """A packet starting an H.264 IDR access unit: an SPS or IDR NAL unit on its own, first in a
    STAP-A aggregate, or the start fragment of an FU-A (RFC 6184 section 5)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_STAP_A:
        return len(payload) > 3 and payload[3] & 0x1F in (_H264_IDR, _H264_SPS)
    if nal_type == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F == _H264_IDR
    return False


KEYFRAME_TESTS: dict[str, KeyframeTest] = {"video/vp8": vp8_keyframe_start, "video/h264": h264_keyframe_start}
"""Codecs video can be forwarded in, by lower-case MIME type."""
