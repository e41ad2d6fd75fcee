"""Call-audio benchmark: cost per 10 ms frame and quality against the peers, in one run.

Run with ``make bench``. It synthesizes its own material deterministically (speech from Debian's
``codec2-examples`` recordings and ``espeak-ng`` voices, rooms from ``pyroomacoustics`` with its
randomized image sources seeded too, seeded noise; the echo scenes are described in
:mod:`tests.benchmarks.call_audio_scenes`), runs the peers frame by frame through small adapters
(converting to the int16 they speak, which is part of their measured cost, as it would be in the
worker), prints one table per question with ratios against the baselines measured in the same run,
draws ERLE versus delay to ``docs/dsp-erle-vs-delay.png`` and finally asserts the targets. Echo
figures are reported on the tuning set and on the held-out set (other rooms, voices, languages and
seeds, never tuned on); the targets hold on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import matplotlib
import noisereduce
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import webrtcvad
from pesq import pesq
from pyrnnoise.rnnoise import create, process_frame
from pyspeex_noise import AudioProcessor as SpeexPreprocessor
from pystoi import stoi
from speechmos import dnsmos
from webrtc_noise_gain import AudioProcessor as WebRtcProcessor

from tandem.media.dsp.agc import GainControl
from tandem.media.dsp.echo import EchoCanceller
from tandem.media.dsp.meters import AudioMeters
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig, warm_up
from tandem.media.dsp.resample import Decimator, Interpolator
from tandem.media.dsp.vad import VoiceActivityDetector
from tests.benchmarks.call_audio_echo import (
    DELAYS_MS,
    DRIFTS_PPM,
    JUMPS_MS,
    SETTLE_S,
    EchoResults,
    align,
    estimates,
    evaluate,
)
from tests.benchmarks.call_audio_peers import Aec3, SpeexAec, from_pcm, to_pcm
from tests.benchmarks.call_audio_scenes import (
    CODEC2,
    CODEC2_SPEECH,
    HELD_OUT,
    TUNING,
    Scene,
    _level,
    _resample,
    build,
    double_talk,
    pink_noise,
)

Signal = npt.NDArray[np.float64]
_SCALE = 32767.0
CODEC2_TALKERS = ("hts1a", "hts2a", "forig", "morig", "kristoff", "vk5qi", "ve9qrp_10s", "mmt1")
"""Other codec2-examples recordings (8 kHz raw int16), summed into babble."""


@cache
def far_speech(rate: int) -> Signal:
    """The natural recording shipped by codec2-examples (10.8 s) at ``rate`` Hz, -26 dBFS."""
    x, sr = sf.read(CODEC2_SPEECH, dtype="float64")
    return _level(_resample(np.asarray(x, dtype=np.float64), int(sr), rate), -26.0)


def level_steps(n: int, rate: int, seed: int) -> Signal:
    """Pink noise whose level steps between -5 and +5 dB every 3 s (a street: traffic comes and goes)."""
    segment = np.arange(n) // (3 * rate)
    return pink_noise(n, seed) * 10.0 ** (np.where(segment % 2 == 1, 5.0, -5.0) / 20.0)


def babble(n: int, rate: int, seed: int) -> Signal:
    """Eight other talkers at once (codec2-examples recordings at seeded offsets), unit RMS."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for name in CODEC2_TALKERS:
        talker = np.fromfile(CODEC2 / f"{name}.raw", dtype=np.int16).astype(np.float64)
        talker = _resample(talker, 8000, rate)
        talker = np.tile(talker, n // talker.shape[0] + 2)
        start = int(rng.integers(0, talker.shape[0] - n))
        part = talker[start : start + n]
        total += part / np.sqrt(np.mean(part**2))
    return np.asarray(total / np.sqrt(np.mean(total**2)), dtype=np.float64)


NOISES: dict[str, Callable[[int, int, int], Signal]] = {
    "pink noise": lambda n, rate, seed: pink_noise(n, seed),
    "pink noise stepping +-5 dB every 3 s": level_steps,
    "babble of 8 talkers": babble,
}
"""Noise scenes; the targets are on the first, the others show tracking and its limits."""


def noisy_speech(rate: int, snr_db: float, noise_kind: str = "pink noise", seed: int = 2) -> tuple[Signal, Signal]:
    """(clean, noisy): the codec2 recording plus noise at ``snr_db`` (speech-active RMS)."""
    clean = far_speech(rate)[: int(10.8 * rate)]
    noise = NOISES[noise_kind](clean.shape[0], rate, seed)
    active = np.abs(clean) > 0.01 * np.max(np.abs(clean))
    speech_rms = float(np.sqrt(np.mean(clean[active] ** 2)))
    noise = noise * speech_rms / 10.0 ** (snr_db / 20.0)
    return clean, clean + noise


def vad_labels(speech: Signal, rate: int) -> npt.NDArray[np.bool_]:
    """Per-10 ms-frame speech labels of a clean signal: frame energy within 30 dB of its peak frames."""
    frame = rate // 100
    frames = speech[: speech.shape[0] // frame * frame].reshape(-1, frame)
    energy = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return np.asarray(energy > np.percentile(energy, 95) - 30.0)


class SpeexNs:
    """Speex preprocessor noise suppression (-30 dB), AGC off; 16 kHz."""

    def __init__(self) -> None:
        self.engine = SpeexPreprocessor(0, -30)

    def process(self, frame: Signal) -> Signal:
        return from_pcm(self.engine.process_10ms(to_pcm(frame)))


class WebRtcNs:
    """WebRTC audio processing noise suppression (level 2 of 0-4), AGC off; 16 kHz."""

    def __init__(self) -> None:
        self.engine = WebRtcProcessor(0, 2)

    def process(self, frame: Signal) -> Signal:
        return from_pcm(self.engine.Process10ms(to_pcm(frame)).audio)


class RnNoise:
    """RNNoise at its native 48 kHz, 480-sample frames."""

    def __init__(self) -> None:
        self.states = [create()]

    def process(self, frame: Signal) -> Signal:
        pcm = np.clip(np.round(frame * _SCALE), -32768, 32767).astype(np.int16)[None, :]
        denoised, _ = process_frame(self.states, pcm)
        return np.asarray(denoised[0], dtype=np.float64) / _SCALE


class WebRtcVad:
    """webrtcvad in mode 2 (of 0-3)."""

    def __init__(self, rate: int, mode: int = 2) -> None:
        self.engine = webrtcvad.Vad(mode)
        self.rate = rate

    def process(self, frame: Signal) -> bool:
        return bool(self.engine.is_speech(to_pcm(frame), self.rate))


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

SNRS_DB = (0, 5, 10)
TIMED_FRAMES = 1000
PAIRED_ROUNDS = 7
PLOT = Path(__file__).resolve().parents[2] / "docs" / "dsp-erle-vs-delay.png"
FrameFn = Callable[[Signal], Signal]


def frames_of(x: Signal, frame: int) -> list[Signal]:
    return [x[i : i + frame].copy() for i in range(0, x.shape[0] // frame * frame, frame)]


def run_frames(fn: FrameFn, x: Signal, frame: int) -> Signal:
    return np.concatenate([fn(f) for f in frames_of(x, frame)])


def per_frame_us(step: Callable[[int], object], frames: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` mean wall time of ``step(i)`` over ``frames`` calls, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(frames):
            step(i)
        best = min(best, (time.perf_counter() - start) / frames)
    return best * 1e6


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def paired_us(first: Callable[[int], object], second: Callable[[int], object]) -> tuple[float, float]:
    """Best per-frame times of two engines timed in alternation (both see the same load)."""
    a = b = float("inf")
    for _ in range(PAIRED_ROUNDS):
        a = min(a, per_frame_us(first, TIMED_FRAMES, 1))
        b = min(b, per_frame_us(second, TIMED_FRAMES, 1))
    return a, b


def bench_cost(rate: int) -> dict[str, float]:
    """Per-frame cost of every stage and peer at ``rate``; the target pairs are timed in alternation:
    our chain against the Speex canceller (16 kHz) or against AEC3 (48 kHz)."""
    frame = rate // 100
    scene = build(double_talk(TUNING[0], 120), rate)
    near = frames_of(scene.mic, frame)[:TIMED_FRAMES]
    far = frames_of(scene.far, frame)[:TIMED_FRAMES]
    out = np.zeros(frame)
    core = np.zeros(160)
    aec, ns = EchoCanceller(16000), NoiseSuppressor(16000)
    unity = np.ones(ns.plan.bins)
    agc, vad, meters = GainControl(), VoiceActivityDetector(), AudioMeters()
    chain = AudioPipeline(PipelineConfig(sample_rate=rate))
    speex, aec3 = SpeexAec(rate), Aec3(rate)
    scene16 = build(double_talk(TUNING[0], 120), 16000)
    near16 = frames_of(scene16.mic, 160)[:TIMED_FRAMES]
    far16 = frames_of(scene16.far, 160)[:TIMED_FRAMES]
    peer = speex if rate == 16000 else aec3
    peer_us, chain_us = paired_us(
        lambda i: peer.process(near[i], far[i]), lambda i: chain.process(near[i], far[i], out)
    )
    other = aec3 if rate == 16000 else speex
    costs = {
        "speex aec 200 ms" if rate == 16000 else "aec3 (aec only)": peer_us,
        "ours: chain": chain_us,
        "aec3 (aec only)" if rate == 16000 else "speex aec 200 ms": per_frame_us(
            lambda i: other.process(near[i], far[i]), TIMED_FRAMES
        ),
        "ours: aec 200 ms (16k band)": per_frame_us(lambda i: aec.process(near16[i], far16[i], core), TIMED_FRAMES),
        "ours: noise suppressor (16k band)": per_frame_us(lambda i: ns.process(near16[i], core, unity), TIMED_FRAMES),
        "ours: agc+limiter": per_frame_us(lambda i: agc.process(near[i], out, True), TIMED_FRAMES),
        "ours: vad (16k band)": per_frame_us(lambda i: vad.process(ns.prior_snr, ns.post_snr), TIMED_FRAMES),
        "ours: meters": per_frame_us(lambda i: meters.process(near[i], True), TIMED_FRAMES),
    }
    if rate == 48000:
        wide = EchoCanceller(rate)
        alone = per_frame_us(lambda i: wide.process(near[i], far[i], out), TIMED_FRAMES)
        costs["ours: aec 200 ms alone at 48k"] = alone
    peer_vad = WebRtcVad(rate)
    costs["webrtcvad"] = per_frame_us(lambda i: peer_vad.process(near[i]), TIMED_FRAMES)
    if rate == 16000:
        webrtc, speex_ns = WebRtcNs(), SpeexNs()
        costs["webrtc ns"] = per_frame_us(lambda i: webrtc.process(near[i]), TIMED_FRAMES)
        costs["speex ns"] = per_frame_us(lambda i: speex_ns.process(near[i]), TIMED_FRAMES)
    else:
        down, up = Decimator(frame), Interpolator(160)

        def resample(i: int) -> None:
            down.process(near[i], core)
            up.process(core, out)

        costs["ours: resampler 48k->16k->48k"] = per_frame_us(resample, TIMED_FRAMES)
        rnnoise = RnNoise()
        costs["rnnoise"] = per_frame_us(lambda i: rnnoise.process(near[i]), TIMED_FRAMES)
    return costs


def bench_noise(snr_db: float, noise_kind: str) -> dict[str, tuple[float, float, float]]:
    clean, noisy = noisy_speech(16000, snr_db, noise_kind)
    ours = NoiseSuppressor(16000)
    out = np.zeros(160)
    unity = np.ones(ours.plan.bins)

    def ours_step(f: Signal) -> Signal:
        ours.process(f, out, unity)
        return out.copy()

    speex, webrtc, rnnoise = SpeexNs(), WebRtcNs(), RnNoise()
    down, up = Decimator(480), Interpolator(160)
    up_buf, down_buf = np.zeros(480), np.zeros(160)

    def rnnoise_step(f: Signal) -> Signal:
        up.process(f, up_buf)
        down.process(rnnoise.process(up_buf), down_buf)
        return down_buf.copy()

    outputs = {
        "unprocessed": noisy,
        "ours": run_frames(ours_step, noisy, 160),
        "speex ns": run_frames(speex.process, noisy, 160),
        "webrtc ns": run_frames(webrtc.process, noisy, 160),
        "rnnoise (48k)": run_frames(rnnoise_step, noisy, 160),
        "noisereduce (batch)": np.asarray(noisereduce.reduce_noise(y=noisy, sr=16000), dtype=np.float64),
    }
    scores = {}
    for name, out_signal in outputs.items():
        est = align(clean, out_signal)
        scores[name] = (
            float(pesq(16000, clean, est, "wb")),
            float(stoi(clean, est, 16000, extended=False)),
            float(dnsmos.run(est, sr=16000)["ovrl_mos"]),
        )
    return scores


def ours_vad() -> Callable[[Signal], bool]:
    """Our VAD on a 16 kHz frame: the suppressor's SNR estimates, then the likelihood-ratio test."""
    ns, vad = NoiseSuppressor(16000), VoiceActivityDetector()
    unity = np.ones(ns.plan.bins)
    out = np.zeros(160)

    def step(frame: Signal) -> bool:
        ns.process(frame, out, unity)
        return vad.process(ns.prior_snr, ns.post_snr)

    return step


def bench_vad() -> dict[str, list[float]]:
    """Frame accuracy against labels from the clean speech."""
    result: dict[str, list[float]] = {"ours": [], "webrtcvad (mode 2)": []}
    for snr in (None, *SNRS_DB):
        clean, noisy = noisy_speech(16000, 60.0 if snr is None else snr)
        labels = vad_labels(clean, 16000)
        ours = ours_vad()
        theirs = WebRtcVad(16000)
        frames = frames_of(noisy, 160)
        for name, step in (("ours", ours), ("webrtcvad (mode 2)", theirs.process)):
            decisions = np.array([step(f) for f in frames])
            result[name].append(float(np.mean(decisions == labels[: decisions.shape[0]])))
    return result


def plot_erle(results: dict[str, EchoResults]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, result in results.items():
        for name in ("ours (aec+res)", "speex+res", "aec3"):
            ax.plot(DELAYS_MS, result.erle[name], marker="o", linestyle="-" if label == "tuning" else "--",
                    label=f"{name}, {label}")  # fmt: skip
    ax.set_xlabel("bulk echo delay (ms)")
    ax.set_ylabel("ERLE, far end only (dB)")
    ax.set_title("ERLE vs delay (16 kHz, rooms RT60 0.2-0.6 s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def echo_tables(label: str, r: EchoResults) -> None:
    def rows(values: dict[str, list[float]]) -> list[list[str]]:
        return [[name, *(f"{v:.1f}" for v in vs)] for name, vs in values.items()]

    table(f"ERLE, far end only, {label} set, 16 kHz (dB)", ["engine", *(f"{d} ms" for d in DELAYS_MS)], rows(r.erle))
    table(f"ERLE under clock drift, 120 ms, {label} set (dB)", ["engine", *(f"{p} ppm" for p in DRIFTS_PPM)],
          rows(r.drift))  # fmt: skip
    jumps = [f"{a}->{b} ms" for a, b in JUMPS_MS]
    table(f"ERLE from {SETTLE_S:.0f} s after a delay jump, {label} set (dB)", ["engine", *jumps], rows(r.jump_erle))
    table(f"Re-convergence (back to 20 dB ERLE) after a delay jump, {label} set (s)", ["engine", *jumps],
          rows(r.reconvergence))  # fmt: skip
    dt = {"unprocessed": r.unprocessed_double_talk, **r.double_talk}
    table(f"Near-end SI-SDR in double talk, {label} set (dB)", ["engine", *(f"{d} ms" for d in DELAYS_MS)], rows(dt))


def echo_misses(label: str, r: EchoResults) -> list[str]:
    ours = "ours (aec+res)"
    misses = []
    for i, delay in enumerate(DELAYS_MS):
        if r.erle[ours][i] < r.erle["aec3"][i] - 3.0:
            misses.append(f"{label}: ERLE at {delay} ms {r.erle[ours][i]:.1f} dB < AEC3 {r.erle['aec3'][i]:.1f} - 3")
        if r.double_talk[ours][i] < r.double_talk["speex+res"][i]:
            misses.append(
                f"{label}: double-talk SI-SDR at {delay} ms {r.double_talk[ours][i]:.1f} dB"
                f" < speex+res {r.double_talk['speex+res'][i]:.1f}"
            )
        if r.double_talk[ours][i] <= r.double_talk["aec3"][i]:
            misses.append(f"{label}: double-talk SI-SDR at {delay} ms not above AEC3's")
    for j, ppm in enumerate(DRIFTS_PPM):
        if r.drift[ours][j] < r.drift["aec3"][j] - 3.0:
            theirs = r.drift["aec3"][j]
            misses.append(f"{label}: ERLE under {ppm} ppm drift {r.drift[ours][j]:.1f} dB < AEC3 {theirs:.1f} - 3")
    drift_200 = r.drift[ours][DRIFTS_PPM.index(200)]
    if drift_200 < 20.0:
        misses.append(f"{label}: ERLE under 200 ppm drift {drift_200:.1f} dB < 20")
    up = r.reconvergence[ours][JUMPS_MS.index((120, 320))]
    if up > 1.5:
        misses.append(f"{label}: re-convergence after 120->320 ms {up:.2f} s > 1.5 s")
    for j, jump in enumerate(JUMPS_MS):
        if r.jump_erle[ours][j] < r.jump_erle["aec3"][j] - 3.0:
            misses.append(f"{label}: ERLE after the {jump} ms jump {r.jump_erle[ours][j]:.1f} dB < AEC3 - 3")
    return misses


def test_call_audio_benchmark() -> None:
    warm_up()
    misses: list[str] = []

    for rate in (16000, 48000):
        costs = bench_cost(rate)
        baseline = "speex aec 200 ms" if rate == 16000 else "aec3 (aec only)"
        base_us = costs[baseline]
        rows = [[name, f"{us:.1f}", f"{us / base_us:.2f}"] for name, us in costs.items()]
        table(f"Cost per 10 ms frame at {rate} Hz", ["engine", "us/frame", f"x {baseline}"], rows)
        if costs["ours: chain"] > base_us:
            misses.append(f"chain {costs['ours: chain']:.1f} us > {baseline} {base_us:.1f} us at {rate} Hz")

    results = {}
    sets: dict[str, list[Scene]] = {"tuning": TUNING, "held-out": HELD_OUT}
    for label, scenes in sets.items():
        results[label] = r = evaluate(scenes)
        echo_tables(label, r)
        misses += echo_misses(label, r)
        delay_errors, drift_errors = estimates(scenes)
        table(
            f"Our estimates against the scenes' truth, {label} set",
            ["quantity", "mean |error|", "max |error|"],
            [
                ["direct-path delay (ms)", f"{np.mean(delay_errors):.2f}", f"{np.max(delay_errors):.2f}"],
                ["clock drift (ppm)", f"{np.mean(drift_errors):.1f}", f"{np.max(drift_errors):.1f}"],
            ],
        )
        if np.max(delay_errors) > 2.0:
            misses.append(f"{label}: delay estimate off by {np.max(delay_errors):.2f} ms > 2 ms")
        if np.max(drift_errors) > 20.0:
            misses.append(f"{label}: drift estimate off by {np.max(drift_errors):.1f} ppm > 20 ppm")
    plot_erle(results)

    for kind in NOISES:
        for snr in SNRS_DB:
            scores = bench_noise(snr, kind)
            rows = [[name, *(f"{v:.3f}" for v in s)] for name, s in scores.items()]
            table(f"Noise suppression, {kind} at {snr} dB SNR", ["engine", "PESQ-WB", "STOI", "DNSMOS"], rows)
            if kind != "pink noise":
                continue
            for peer in ("speex ns", "webrtc ns"):
                for metric, idx in (("PESQ-WB", 0), ("DNSMOS", 2)):
                    ours, theirs = scores["ours"][idx], scores[peer][idx]
                    if ours < theirs:
                        misses.append(f"{metric} at {snr} dB: ours {ours:.3f} < {peer} {theirs:.3f}")

    vad = bench_vad()
    rows = [[name, *(f"{v:.3f}" for v in values)] for name, values in vad.items()]
    table("VAD frame accuracy vs synthesized labels", ["engine", "clean", *(f"{s} dB" for s in SNRS_DB)], rows)

    print("\nTargets missed:" if misses else "\nAll targets met.")
    for miss in misses:
        print(f"  - {miss}")
    assert not misses, "; ".join(misses)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
