"""Call-audio benchmark (issue 4): cost per 10 ms frame and quality against the peers, in one run.

Run with ``make bench``. It synthesizes its material (see ``dsp_material.py``), prints one table per
question with ratios against the baselines measured in the same run, draws ERLE versus delay to
``docs/dsp-erle-vs-delay.png`` and finally asserts the issue's ratio targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import noisereduce
import numpy as np
import pytest
from pesq import pesq
from pystoi import stoi
from speechmos import dnsmos

from dsp_material import Signal, echo_scene, noisy_speech, vad_labels
from dsp_peers import RnNoise, SpeexAec, SpeexNs, WebRtcNs, WebRtcVad
from tandem.media.dsp.agc import GainControl
from tandem.media.dsp.echo import EchoCanceller
from tandem.media.dsp.meters import AudioMeters
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig, warm_up
from tandem.media.dsp.resample import Decimator, Interpolator
from tandem.media.dsp.vad import VoiceActivityDetector

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DELAYS_MS = (0, 120, 250, 400)
SNRS_DB = (0, 5, 10)
TIMED_FRAMES = 1000
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


def align(ref: Signal, out: Signal, max_lag: int = 1600) -> Signal:
    """``out`` shifted by the lag (0..max_lag samples) that best matches ``ref``, same length."""
    n = min(ref.shape[0], out.shape[0]) - max_lag
    scores = [float(np.dot(ref[:n], out[lag : lag + n])) for lag in range(max_lag)]
    lag = int(np.argmax(scores))
    shifted = np.zeros_like(ref)
    shifted[: out.shape[0] - lag] = out[lag : lag + ref.shape[0]]
    return shifted


def si_sdr(ref: Signal, est: Signal) -> float:
    scale = float(np.dot(est, ref) / np.dot(ref, ref))
    target = scale * ref
    return float(10.0 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


def ours_canceller(rate: int) -> Callable[[Signal, Signal], tuple[Signal, Signal]]:
    """Our canceller: returns (linear output, output with residual-echo suppression applied)."""
    aec = EchoCanceller(rate)
    res = NoiseSuppressor(rate, max_attenuation_db=0.0)
    frame = rate // 100
    linear = np.zeros(frame)
    full = np.zeros(frame)

    def step(near: Signal, far: Signal) -> tuple[Signal, Signal]:
        aec.process(near, far, linear)
        res.process(linear, full, aec.residual_gain)
        return linear.copy(), full.copy()

    return step


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def bench_cost(rate: int) -> dict[str, float]:
    frame = rate // 100
    scene = echo_scene(rate, 120, double_talk=True)
    near = frames_of(scene.mic, frame)[:TIMED_FRAMES]
    far = frames_of(scene.far, frame)[:TIMED_FRAMES]
    out = np.zeros(frame)
    core = np.zeros(160)
    unity = np.ones(257)
    aec, ns = EchoCanceller(16000), NoiseSuppressor(16000)
    agc, vad, meters = GainControl(), VoiceActivityDetector(), AudioMeters()
    chain = AudioPipeline(PipelineConfig(sample_rate=rate))
    speex = SpeexAec(rate)
    scene16 = echo_scene(16000, 120, double_talk=True)
    near16 = frames_of(scene16.mic, 160)[:TIMED_FRAMES]
    far16 = frames_of(scene16.far, 160)[:TIMED_FRAMES]
    costs = {
        "speex aec 200 ms": per_frame_us(lambda i: speex.process(near[i], far[i]), TIMED_FRAMES),
        "ours: chain": per_frame_us(lambda i: chain.process(near[i], far[i], out), TIMED_FRAMES),
        "ours: aec 200 ms (16k band)": per_frame_us(
            lambda i: aec.process(near16[i], far16[i], core), TIMED_FRAMES
        ),
        "ours: noise suppressor (16k band)": per_frame_us(
            lambda i: ns.process(near16[i], core, unity), TIMED_FRAMES
        ),
        "ours: agc+limiter": per_frame_us(lambda i: agc.process(near[i], out, True), TIMED_FRAMES),
        "ours: vad (16k band)": per_frame_us(
            lambda i: vad.process(ns.prior_snr, ns.post_snr), TIMED_FRAMES
        ),
        "ours: meters": per_frame_us(lambda i: meters.process(near[i], True), TIMED_FRAMES),
    }
    peer_vad = WebRtcVad(rate)
    costs["webrtcvad"] = per_frame_us(lambda i: peer_vad.process(near[i]), TIMED_FRAMES)
    if rate == 16000:
        webrtc, speex_ns = WebRtcNs(), SpeexNs()
        costs["webrtc ns"] = per_frame_us(lambda i: webrtc.process(near[i]), TIMED_FRAMES)
        costs["speex ns"] = per_frame_us(lambda i: speex_ns.process(near[i]), TIMED_FRAMES)
    else:
        down, up = Decimator(frame), Interpolator(160)
        costs["ours: resampler 48k->16k->48k"] = per_frame_us(
            lambda i: (down.process(near[i], core), up.process(core, out)), TIMED_FRAMES
        )
        rnnoise = RnNoise()
        costs["rnnoise"] = per_frame_us(lambda i: rnnoise.process(near[i]), TIMED_FRAMES)
    return costs


def bench_erle(rate: int) -> dict[str, list[float]]:
    frame = rate // 100
    result: dict[str, list[float]] = {"ours linear": [], "ours (aec+res)": [], "speex 200 ms": []}
    for delay in DELAYS_MS:
        scene = echo_scene(rate, delay, double_talk=False)
        ours = ours_canceller(rate)
        pairs = [ours(n, f) for n, f in zip(frames_of(scene.mic, frame), frames_of(scene.far, frame), strict=True)]
        linear = np.concatenate([p[0] for p in pairs])
        full = np.concatenate([p[1] for p in pairs])
        speex = SpeexAec(rate)
        theirs = np.concatenate(
            [speex.process(n, f) for n, f in zip(frames_of(scene.mic, frame), frames_of(scene.far, frame), strict=True)]
        )
        half = linear.shape[0] // 2
        mic = scene.mic[half : linear.shape[0]]
        for name, out in (("ours linear", linear), ("ours (aec+res)", full), ("speex 200 ms", theirs)):
            result[name].append(float(10.0 * np.log10(np.sum(mic**2) / np.sum(out[half:] ** 2))))
    return result


def bench_double_talk(rate: int, delay_ms: int) -> dict[str, float]:
    frame = rate // 100
    scene = echo_scene(rate, delay_ms, double_talk=True)
    ours = ours_canceller(rate)
    pairs = [ours(n, f) for n, f in zip(frames_of(scene.mic, frame), frames_of(scene.far, frame), strict=True)]
    speex = SpeexAec(rate)
    theirs = np.concatenate(
        [speex.process(n, f) for n, f in zip(frames_of(scene.mic, frame), frames_of(scene.far, frame), strict=True)]
    )
    n = theirs.shape[0]
    half = n // 2
    near = scene.near[half:n]
    outputs = {
        "unprocessed": scene.mic[:n],
        "ours linear": np.concatenate([p[0] for p in pairs]),
        "ours (aec+res)": np.concatenate([p[1] for p in pairs]),
        "speex 200 ms": theirs,
    }
    return {name: si_sdr(near, align(near, out[half:])) for name, out in outputs.items()}


def bench_noise(snr_db: float) -> dict[str, tuple[float, float, float]]:
    clean, noisy = noisy_speech(16000, snr_db)
    ours = NoiseSuppressor(16000)
    out = np.zeros(160)
    unity = np.ones(257)

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


def bench_vad() -> dict[str, list[float]]:
    """Frame accuracy against labels from the clean speech; ours reads the suppressor's SNRs."""
    result: dict[str, list[float]] = {"ours": [], "webrtcvad (mode 2)": []}
    unity = np.ones(257)
    out = np.zeros(160)
    for snr in (None, *SNRS_DB):
        clean, noisy = noisy_speech(16000, 60.0 if snr is None else snr)
        labels = vad_labels(clean, 16000)
        ns, ours, theirs = NoiseSuppressor(16000), VoiceActivityDetector(), WebRtcVad(16000)
        frames = frames_of(noisy, 160)

        def ours_step(f: Signal) -> bool:
            ns.process(f, out, unity)
            return ours.process(ns.prior_snr, ns.post_snr)

        for name, step in (("ours", ours_step), ("webrtcvad (mode 2)", theirs.process)):
            decisions = np.array([step(f) for f in frames])
            result[name].append(float(np.mean(decisions == labels[: decisions.shape[0]])))
    return result


def plot_erle(erle: dict[str, list[float]]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in erle.items():
        ax.plot(DELAYS_MS, values, marker="o", label=name)
    ax.axhline(20.0, color="grey", linestyle=":", label="20 dB target")
    ax.set_xlabel("bulk echo delay (ms)")
    ax.set_ylabel("ERLE, far end only (dB)")
    ax.set_title("Echo return loss enhancement vs delay (16 kHz, 200 ms tail)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def test_call_audio_benchmark() -> None:
    warm_up()
    misses: list[str] = []

    for rate in (16000, 48000):
        costs = bench_cost(rate)
        speex = costs["speex aec 200 ms"]
        rows = [[name, f"{us:.1f}", f"{us / speex:.2f}"] for name, us in costs.items()]
        table(f"Cost per 10 ms frame at {rate} Hz", ["engine", "us/frame", "x speex aec"], rows)
        if costs["ours: chain"] > speex:
            misses.append(f"chain {costs['ours: chain']:.1f} us > speex aec {speex:.1f} us at {rate} Hz")

    erle = bench_erle(16000)
    rows = [[name, *(f"{v:.1f}" for v in values)] for name, values in erle.items()]
    table("ERLE, far end only, 16 kHz (dB)", ["engine", *(f"{d} ms" for d in DELAYS_MS)], rows)
    plot_erle(erle)
    for i, delay in enumerate(DELAYS_MS):
        ours, speex = erle["ours (aec+res)"][i], erle["speex 200 ms"][i]
        if ours < speex or (delay >= 250 and ours < 20.0):
            misses.append(f"ERLE at {delay} ms: ours {ours:.1f} dB, speex {speex:.1f} dB")

    for delay in (120, 250):
        dt = bench_double_talk(16000, delay)
        rows = [[name, f"{v:.1f}"] for name, v in dt.items()]
        table(f"Near-end SI-SDR in double talk, {delay} ms delay (dB)", ["engine", "SI-SDR"], rows)
        if dt["ours (aec+res)"] < dt["speex 200 ms"]:
            misses.append(f"double-talk SI-SDR at {delay} ms: ours {dt['ours (aec+res)']:.1f} dB < speex")

    for snr in SNRS_DB:
        scores = bench_noise(snr)
        rows = [[name, *(f"{v:.2f}" for v in s)] for name, s in scores.items()]
        table(f"Noise suppression, pink noise at {snr} dB SNR", ["engine", "PESQ-WB", "STOI", "DNSMOS"], rows)
        for peer in ("speex ns", "webrtc ns"):
            for metric, idx in (("PESQ-WB", 0), ("DNSMOS", 2)):
                if scores["ours"][idx] < scores[peer][idx]:
                    misses.append(
                        f"{metric} at {snr} dB: ours {scores['ours'][idx]:.2f} < {peer} {scores[peer][idx]:.2f}"
                    )

    vad = bench_vad()
    rows = [[name, *(f"{v:.3f}" for v in values)] for name, values in vad.items()]
    table("VAD frame accuracy vs synthesized labels", ["engine", "clean", *(f"{s} dB" for s in SNRS_DB)], rows)

    print("\nTargets missed:" if misses else "\nAll targets met.")
    for miss in misses:
        print(f"  - {miss}")
    assert not misses, "; ".join(misses)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
