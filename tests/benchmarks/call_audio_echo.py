"""The echo canceller's quality questions, asked of every engine on the scenes of
:mod:`tests.benchmarks.call_audio_scenes`: ERLE with the far end alone at each bulk delay, under clock
drift and after delay jumps (with the re-convergence time), the near-end voice kept in double talk
(SI-SDR), and the bulk-delay and drift estimates of our canceller against the scenes' truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tandem.media.dsp.echo import EchoCanceller
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig
from tests.benchmarks.call_audio_peers import Aec3, Signal, SpeexAec, SpeexAecRes
from tests.benchmarks.call_audio_scenes import EchoScene, Scene, build, double_talk, far_only
from tests.unit.dsp.signals import si_sdr

Engine = Callable[[Signal, Signal], Signal]
DELAYS_MS = (0, 120, 250, 400)
DRIFTS_PPM = (50, 200, 300)
JUMPS_MS = ((120, 320), (250, 60))
RECONVERGED_DB = 20.0
"""Re-converged: the smoothed ERLE back at this level (the ERLE an echo canceller must reach)..."""
RECONVERGED_HOLD_S = 0.25
"""...and staying there this long."""
SETTLE_S = 2.0
"""ERLE after a jump is measured from this long after it to the end of the scene."""


class Ours:
    """Our echo canceller and its residual-echo suppressor (the noise suppressor's STFT with no noise
    attenuation); ``linear`` keeps the adaptive filter's output alone."""

    def __init__(self, rate: int, linear: bool = False, tail_ms: int = 200) -> None:
        self.aec = EchoCanceller(rate, tail_ms)
        self.res = NoiseSuppressor(rate, max_attenuation_db=0.0)
        self.linear = linear
        self.frame = rate // 100
        self.cancelled = np.zeros(self.frame)
        self.out = np.zeros(self.frame)

    def process(self, near: Signal, far: Signal) -> Signal:
        self.aec.process(near, far, self.cancelled)
        if self.linear:
            return self.cancelled.copy()
        self.res.process(self.cancelled, self.out, self.aec.residual_gain)
        return self.out.copy()


class Chain:
    """Our whole chain as the worker runs it (echo canceller, residual-echo and noise suppressors,
    VAD), AGC off so that levels compare."""

    def __init__(self, rate: int) -> None:
        self.pipeline = AudioPipeline(PipelineConfig(sample_rate=rate, gain_control=False))
        self.out = np.zeros(rate // 100)

    def process(self, near: Signal, far: Signal) -> Signal:
        self.pipeline.process(near, far, self.out)
        return self.out.copy()


ENGINES: dict[str, Callable[[int], Engine]] = {
    "ours linear": lambda rate: Ours(rate, linear=True).process,
    "ours (aec+res)": lambda rate: Ours(rate).process,
    "ours (chain)": lambda rate: Chain(rate).process,
    "speex 200 ms": lambda rate: SpeexAec(rate).process,
    "speex+res": lambda rate: SpeexAecRes(rate).process,
    "aec3": lambda rate: Aec3(rate).process,
}


def run(engine: Engine, scene: EchoScene) -> Signal:
    """Feed ``scene`` (mic, far) through ``engine`` frame by frame."""
    frame = scene.rate // 100
    frames = scene.mic.shape[0] // frame
    out = np.zeros(frames * frame)
    for i in range(frames):
        s = slice(i * frame, (i + 1) * frame)
        out[s] = engine(scene.mic[s].copy(), scene.far[s].copy())
    return out


def erle_db(mic: Signal, out: Signal) -> float:
    return float(10.0 * np.log10(np.sum(mic**2) / (np.sum(out**2) + 1e-20)))


def align(ref: Signal, out: Signal, max_lag: int = 1600) -> Signal:
    """``out`` shifted earlier by the lag (0..max_lag samples) that best matches ``ref``."""
    n = min(ref.shape[0], out.shape[0]) - max_lag
    corr = np.correlate(out[: n + max_lag], ref[:n], mode="valid")[:max_lag]
    lag = int(np.argmax(corr))
    shifted = np.zeros_like(ref)
    shifted[: out.shape[0] - lag] = out[lag : lag + ref.shape[0]]
    return shifted


def smoothed_erle(scene: EchoScene, out: Signal, window_s: float = 0.5) -> Signal:
    """Per-frame ERLE (dB) over the last ``window_s`` of frames where the echo is active."""
    frame = scene.rate // 100
    frames = out.shape[0] // frame
    mic = np.sum(scene.mic[: frames * frame].reshape(frames, frame) ** 2, axis=1)
    res = np.sum(out[: frames * frame].reshape(frames, frame) ** 2, axis=1)
    echo = np.sum(scene.echo[: frames * frame].reshape(frames, frame) ** 2, axis=1)
    active = echo > 1e-3 * np.max(echo)
    a = 1.0 / (100.0 * window_s)
    num = den = 1e-20
    erle = np.full(frames, np.nan)
    for t in range(frames):
        if active[t]:
            num += a * (mic[t] - num)
            den += a * (res[t] - den)
        erle[t] = 10.0 * np.log10(num / den)
    return erle


def reconvergence_s(scene: EchoScene, out: Signal) -> float:
    """Seconds from the delay jump (the scene's middle) until the smoothed ERLE is back at
    ``RECONVERGED_DB`` and stays there ``RECONVERGED_HOLD_S``; inf if it never is."""
    erle = smoothed_erle(scene, out)
    jump = erle.shape[0] // 2
    hold = int(100 * RECONVERGED_HOLD_S)
    ok = erle >= RECONVERGED_DB
    for t in range(jump, erle.shape[0] - hold):
        if ok[t : t + hold].all():
            return float(t - jump) / 100.0
    return float("inf")


@dataclass
class EchoResults:
    """Per engine: ERLE at each delay, under each drift, after each jump (from ``SETTLE_S`` after it);
    re-convergence after each jump; near-end SI-SDR in double talk at each delay (means over the
    scenes of a set; a re-convergence that never happens in one room makes the mean inf)."""

    erle: dict[str, list[float]]
    drift: dict[str, list[float]]
    jump_erle: dict[str, list[float]]
    reconvergence: dict[str, list[float]]
    double_talk: dict[str, list[float]]
    unprocessed_double_talk: list[float]


def _mean_over(scenes: list[Scene], rate: int, fn: Callable[[EchoScene], dict[str, float]]) -> dict[str, float]:
    rows = [fn(build(s, rate)) for s in scenes]
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


def _steady(scene: EchoScene) -> dict[str, float]:
    half = scene.mic.shape[0] // 2
    return {name: erle_db(scene.mic[half:], run(make(scene.rate), scene)[half:]) for name, make in ENGINES.items()}


def _jump(scene: EchoScene) -> dict[str, float]:
    settled = scene.mic.shape[0] // 2 + int(SETTLE_S * scene.rate)
    result = {}
    for name, make in ENGINES.items():
        out = run(make(scene.rate), scene)
        result[f"{name}/erle"] = erle_db(scene.mic[settled:], out[settled:])
        result[f"{name}/reconvergence"] = reconvergence_s(scene, out)
    return result


def _double_talk(scene: EchoScene) -> dict[str, float]:
    half = scene.mic.shape[0] // 2
    near = scene.near[half:]
    result = {"unprocessed": si_sdr(near, scene.mic[half:])}
    for name, make in ENGINES.items():
        out = run(make(scene.rate), scene)
        result[name] = si_sdr(near, align(near, out[half:]))
    return result


def evaluate(scenes: list[Scene], rate: int = 16000) -> EchoResults:
    """Every question on every scene of a set, averaged over the set's rooms."""
    names = list(ENGINES)
    erle = {n: [] for n in names}  # type: dict[str, list[float]]
    drift = {n: [] for n in names}  # type: dict[str, list[float]]
    jump_erle = {n: [] for n in names}  # type: dict[str, list[float]]
    reconv = {n: [] for n in names}  # type: dict[str, list[float]]
    dt = {n: [] for n in names}  # type: dict[str, list[float]]
    unprocessed: list[float] = []
    for delay in DELAYS_MS:
        steady = _mean_over([far_only(s, delay_ms=delay) for s in scenes], rate, _steady)
        talk = _mean_over([double_talk(s, delay) for s in scenes], rate, _double_talk)
        for n in names:
            erle[n].append(steady[n])
            dt[n].append(talk[n])
        unprocessed.append(talk["unprocessed"])
    for ppm in DRIFTS_PPM:
        drifting = _mean_over([far_only(s, delay_ms=120, drift_ppm=ppm) for s in scenes], rate, _steady)
        for n in names:
            drift[n].append(drifting[n])
    for start, end in JUMPS_MS:
        jumped = _mean_over([far_only(s, delay_ms=start, jump_to_ms=end) for s in scenes], rate, _jump)
        for n in names:
            jump_erle[n].append(jumped[f"{n}/erle"])
            reconv[n].append(jumped[f"{n}/reconvergence"])
    return EchoResults(erle, drift, jump_erle, reconv, dt, unprocessed)


def estimates(scenes: list[Scene], rate: int = 16000) -> tuple[list[float], list[float]]:
    """Our canceller's errors against the scenes' truth at the end of each far-end-only scene: the
    delay of the echo's direct path (ms) at every bulk delay, and the clock drift (ppm) at every drift."""
    delay_errors = []
    for s in scenes:
        for delay in DELAYS_MS:
            scene = build(far_only(s, delay_ms=delay), rate)
            ours = Ours(rate, linear=True)
            run(ours.process, scene)
            delay_errors.append(abs(ours.aec.report.delay_ms - scene.direct_ms))
    drift_errors = []
    for s in scenes:
        for ppm in DRIFTS_PPM:
            scene = build(far_only(s, delay_ms=120, drift_ppm=ppm), rate)
            ours = Ours(rate, linear=True)
            run(ours.process, scene)
            drift_errors.append(abs(ours.aec.report.drift_ppm - ppm))
    return delay_errors, drift_errors
