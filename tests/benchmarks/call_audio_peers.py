"""Peers of the call-audio benchmark's echo canceller, frame by frame on 10 ms frames of float64.

Each adapter converts to the int16 its engine speaks (part of its measured cost, as it would be in
the worker). Speex's residual-echo suppressor lives in its preprocessor, which the ``speexdsp`` binding
does not expose, so :class:`SpeexAecRes` calls ``libspeexdsp`` (Debian ``libspeexdsp-dev``) through
ctypes: the preprocessor is linked to the echo state, as ``speexdsp``'s own ``testecho.c`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import numpy.typing as npt
from aec_audio_processing import AudioProcessor as WebRtcApm
from speexdsp import EchoCanceller as SpeexEchoCanceller

Signal = npt.NDArray[np.float64]
_SCALE = 32767.0
_SET_ECHO_STATE = 24  # SPEEX_PREPROCESS_SET_ECHO_STATE in speex_preprocess.h
_SET_DENOISE = 0
_SET_AGC = 2


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


def _libspeexdsp() -> ctypes.CDLL:
    path = ctypes.util.find_library("speexdsp")
    if path is None:
        raise RuntimeError("libspeexdsp is not installed (apt-get install libspeexdsp-dev)")
    lib = ctypes.CDLL(path)
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]
    return lib


class SpeexAecRes:
    """Speex's echo canceller followed by its preprocessor linked to the echo state (the residual-echo
    suppressor; its noise suppressor stays at its default -15 dB, AGC off)."""

    _SET_SAMPLING_RATE = 24  # SPEEX_ECHO_SET_SAMPLING_RATE in speex_echo.h

    def __init__(self, rate: int, tail_ms: int = 200) -> None:
        self.lib = lib = _libspeexdsp()
        frame = rate // 100
        self.echo = lib.speex_echo_state_init(frame, rate * tail_ms // 1000)
        value = ctypes.c_int(rate)
        lib.speex_echo_ctl(self.echo, self._SET_SAMPLING_RATE, ctypes.byref(value))
        self.pre = lib.speex_preprocess_state_init(frame, rate)
        lib.speex_preprocess_ctl(self.pre, _SET_ECHO_STATE, ctypes.c_void_p(self.echo))
        off = ctypes.c_int(0)
        lib.speex_preprocess_ctl(self.pre, _SET_AGC, ctypes.byref(off))
        self.near = np.zeros(frame, dtype=np.int16)
        self.far = np.zeros(frame, dtype=np.int16)
        self.out = np.zeros(frame, dtype=np.int16)

    def process(self, near: Signal, far: Signal) -> Signal:
        self.near[:] = np.clip(np.round(near * _SCALE), -32768, 32767)
        self.far[:] = np.clip(np.round(far * _SCALE), -32768, 32767)
        self.lib.speex_echo_cancellation(self.echo, self.near.ctypes.data, self.far.ctypes.data, self.out.ctypes.data)
        self.lib.speex_preprocess_run(self.pre, self.out.ctypes.data)
        return self.out.astype(np.float64) / _SCALE

    def __del__(self) -> None:
        self.lib.speex_preprocess_state_destroy(self.pre)
        self.lib.speex_echo_state_destroy(self.echo)


class Aec3:
    """WebRTC's AEC3 (``aec-audio-processing``, the audio processing module with only the echo
    canceller on; its own delay estimator finds the bulk delay, the reported stream delay is 0)."""

    def __init__(self, rate: int) -> None:
        self.engine = WebRtcApm(enable_aec=True, enable_ns=False, enable_agc=False, enable_vad=False)
        self.engine.set_stream_format(rate, 1)
        self.engine.set_reverse_stream_format(rate, 1)
        self.engine.set_stream_delay(0)

    def process(self, near: Signal, far: Signal) -> Signal:
        self.engine.process_reverse_stream(to_pcm(far))
        return from_pcm(self.engine.process_stream(to_pcm(near)))
