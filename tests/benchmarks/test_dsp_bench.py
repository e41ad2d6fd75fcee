"""Call-audio benchmark (issue 4): cost per 10 ms frame and quality against the peers, in one run.

Run with ``make bench``. It synthesizes its own material deterministically (speech from Debian's
``codec2-examples`` recording and ``espeak-ng``, rooms from ``pyroomacoustics``, seeded noise), runs
the peers frame by frame through small adapters (converting to the int16 they speak, which is part of
their measured cost, as it would be in the worker), prints one table per question with ratios against
the baselines measured in the same run, draws ERLE versus delay to ``docs/dsp-erle-vs-delay.png`` and
finally asserts the issue's ratio targets.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib
import noisereduce
import numpy as np
import numpy.typing as npt
import pyroomacoustics as pra
import pytest
import soundfile as sf
import webrtcvad
from pesq import pesq
from pyrnnoise.rnnoise import create, process_frame
from pyspeex_noise import AudioProcessor as SpeexPreprocessor
from pystoi import stoi
from scipy.signal import resample_poly
from speechmos import dnsmos
from speexdsp import EchoCanceller as SpeexEchoCanceller
from webrtc_noise_gain import AudioProcessor as WebRtcProcessor

from tandem.media.dsp.agc import GainControl
from tandem.media.dsp.echo import EchoCanceller
from tandem.media.dsp.meters import AudioMeters
from tandem.media.dsp.noise import NoiseSuppressor
from tandem.media.dsp.pipeline import AudioPipeline, PipelineConfig, warm_up
from tandem.media.dsp.resample import Decimator, Interpolator
from tandem.media.dsp.vad import VoiceActivityDetector

Signal = npt.NDArray[np.float64]

CODEC2_SPEECH = Path("/usr/share/codec2/raw/speech_orig_16k.wav")
CODEC2_TALKERS = ("hts1a", "hts2a", "forig", "morig", "kristoff", "vk5qi", "ve9qrp_10s", "mmt1")
"""Other codec2-examples recordings (8 kHz raw int16), summed into babble."""
NEAR_SENTENCES = (
    "Could you show me the blue one again, a little closer to the camera please.",
    "I think the medium size would fit me, but what about the return policy?",
    "That looks lovely. How long would shipping take to my city?",
    "Can I pay in my own currency, and is there a discount for two?",
)


def _level(x: Signal, dbfs: float) -> Signal:
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    return np.asarray(x * (10.0 ** (dbfs / 20.0) / rms), dtype=np.float64)


def _resample(x: Signal, rate_in: int, rate_out: int) -> Signal:
    g = np.gcd(rate_in, rate_out)
    return np.asarray(resample_poly(x, rate_out // g, rate_in // g), dtype=np.float64)


@cache
def far_speech(rate: int) -> Signal:
    """The natural recording shipped by codec2-examples (10.8 s), twice, at ``rate`` Hz, -26 dBFS."""
    x, sr = sf.read(CODEC2_SPEECH, dtype="float64")
    x = _resample(np.concatenate([x, x]), sr, rate)
    return _level(x, -26.0)


@cache
def near_speech(rate: int) -> Signal:
    """A female espeak-ng voice saying other sentences, with pauses, at ``rate`` Hz, -26 dBFS."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "near.wav"
        text = " ... ".join(NEAR_SENTENCES)
        subprocess.run([espeak, "-v", "en-us+f3", "-s", "150", "-w", str(wav), text], check=True)
        x, sr = sf.read(wav, dtype="float64")
    return _level(_resample(x, sr, rate), -26.0)


@cache
def room_response(rate: int, rt60_s: float = 0.25) -> Signal:
    """Loudspeaker-to-microphone impulse response of a furnished 5x4x3 m room (seeded geometry)."""
    room_dim = [5.0, 4.0, 3.0]
    absorption, max_order = pra.inverse_sabine(rt60_s, room_dim)
    room = pra.ShoeBox(room_dim, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source([1.2, 1.5, 1.1])
    room.add_microphone([1.6, 1.9, 1.2])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir[: int(0.4 * rate)]


def pink_noise(n: int, seed: int) -> Signal:
    """Pink (1/f) noise of ``n`` samples, unit RMS."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return np.asarray(x / np.sqrt(np.mean(x**2)), dtype=np.float64)


@dataclass(frozen=True)
class EchoScene:
    """One echo scene: ``mic`` = ``echo`` + ``near`` + noise, ``far`` = what the worker forwarded."""

    far: Signal
    mic: Signal
    echo: Signal
    near: Signal


def echo_scene(
    rate: int,
    delay_ms: float,
    double_talk: bool,
    delay_jump_ms: float | None = None,
    drift_ppm: float = 0.0,
    seed: int = 1,
) -> EchoScene:
    """Far-end speech echoed through the room after ``delay_ms`` (-6 dB echo return loss).

    With ``double_talk`` the near-end talker speaks over the second half; with ``delay_jump_ms`` the
    bulk delay jumps to that value at the middle of the scene; with ``drift_ppm`` the capture clock
    runs that much fast, so the echo slides later over the scene.
    """
    far = far_speech(rate)
    n = far.shape[0]
    echo_full = np.convolve(far, room_response(rate))[:n]
    echo_full = _level(echo_full, -32.0)
    echo = np.zeros(n)
    d0 = int(delay_ms * rate / 1000)
    echo[d0:] = echo_full[: n - d0]
    if delay_jump_ms is not None:
        half = n // 2
        d1 = int(delay_jump_ms * rate / 1000)
        echo[half:] = 0.0
        echo[half + d1 :] = echo_full[half : n - d1]
    if drift_ppm:
        echo = np.interp(np.arange(n) / (1.0 + drift_ppm * 1e-6), np.arange(n), echo)
    near = np.zeros(n)
    if double_talk:
        speech = near_speech(rate)
        start = n // 2
        length = min(speech.shape[0], n - start)
        near[start : start + length] = speech[:length]
    noise = _level(pink_noise(n, seed), -65.0)
    return EchoScene(far=far, mic=echo + near + noise, echo=echo, near=near)


def level_steps(n: int, rate: int, seed: int) -> Signal:
    """Pink noise whose level steps between -5 and +5 dB every 3 s (a street: traffic comes and goes)."""
    segment = np.arange(n) // (3 * rate)
    return pink_noise(n, seed) * 10.0 ** (np.where(segment % 2 == 1, 5.0, -5.0) / 20.0)


def babble(n: int, rate: int, seed: int) -> Signal:
    """Eight other talkers at once (codec2-examples recordings at seeded offsets), unit RMS."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for name in CODEC2_TALKERS:
        talker = np.fromfile(CODEC2_SPEECH.parent / f"{name}.raw", dtype=np.int16).astype(np.float64)
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
"""Noise scenes; the issue's targets are on the first, the others show tracking and its limits."""


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


_SCALE = 32767.0


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

DELAYS_MS = (0, 120, 250, 400)
SNRS_DB = (0, 5, 10)
DRIFTS_PPM = (0, 20, 50)
TIMED_FRAMES = 1000
PAIRED_ROUNDS = 7
PLOT = Path(__file__).resolve().parents[2] / "docs" / "dsp-erle-vs-delay.png"
FrameFn = Callable[[Signal], Signal]


def frames_of(x: Signal, frame: int) -> list[Signal]:
    return [x[i : i + frame].copy() for i in range(0, x.shape[0] // frame * frame, frame)]


def run_frames(fn: FrameFn, x: Signal, frame: int) -> Signal:
    return np.concatenate([fn(f) for f in frames_of(x, frame)])


def run_scene(fn: Callable[[Signal, Signal], Signal], scene: EchoScene, frame: int) -> Signal:
    """Feed ``scene`` (mic, far) through ``fn`` frame by frame."""
    pairs = zip(frames_of(scene.mic, frame), frames_of(scene.far, frame), strict=True)
    return np.concatenate([fn(near, far) for near, far in pairs])


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


def ours_canceller(rate: int) -> Callable[[Signal, Signal], Signal]:
    """Our canceller: each frame returns [linear output, output with residual-echo suppression]."""
    aec = EchoCanceller(rate)
    res = NoiseSuppressor(rate, max_attenuation_db=0.0)
    frame = rate // 100
    linear = np.zeros(frame)
    full = np.zeros(frame)

    def step(near: Signal, far: Signal) -> Signal:
        aec.process(near, far, linear)
        res.process(linear, full, aec.residual_gain)
        return np.stack([linear, full], axis=1)

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
    aec, ns = EchoCanceller(16000), NoiseSuppressor(16000)
    unity = np.ones(ns.plan.bins)
    agc, vad, meters = GainControl(), VoiceActivityDetector(), AudioMeters()
    chain = AudioPipeline(PipelineConfig(sample_rate=rate))
    speex = SpeexAec(rate)
    scene16 = echo_scene(16000, 120, double_talk=True)
    near16 = frames_of(scene16.mic, 160)[:TIMED_FRAMES]
    far16 = frames_of(scene16.far, 160)[:TIMED_FRAMES]
    # the target pair is timed in alternation so both see the same load on a shared machine
    speex_us = chain_us = float("inf")
    for _ in range(PAIRED_ROUNDS):
        speex_us = min(speex_us, per_frame_us(lambda i: speex.process(near[i], far[i]), TIMED_FRAMES, 1))
        chain_us = min(chain_us, per_frame_us(lambda i: chain.process(near[i], far[i], out), TIMED_FRAMES, 1))
    costs = {
        "speex aec 200 ms": speex_us,
        "ours: chain": chain_us,
        "ours: aec 200 ms (16k band)": per_frame_us(lambda i: aec.process(near16[i], far16[i], core), TIMED_FRAMES),
        "ours: noise suppressor (16k band)": per_frame_us(lambda i: ns.process(near16[i], core, unity), TIMED_FRAMES),
        "ours: agc+limiter": per_frame_us(lambda i: agc.process(near[i], out, True), TIMED_FRAMES),
        "ours: vad (16k band)": per_frame_us(lambda i: vad.process(ns.prior_snr, ns.post_snr), TIMED_FRAMES),
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

        def resample(i: int) -> None:
            down.process(near[i], core)
            up.process(core, out)

        costs["ours: resampler 48k->16k->48k"] = per_frame_us(resample, TIMED_FRAMES)
        rnnoise = RnNoise()
        costs["rnnoise"] = per_frame_us(lambda i: rnnoise.process(near[i]), TIMED_FRAMES)
    return costs


def bench_erle(rate: int) -> dict[str, list[float]]:
    frame = rate // 100
    result: dict[str, list[float]] = {"ours linear": [], "ours (aec+res)": [], "speex 200 ms": []}
    for delay in DELAYS_MS:
        scene = echo_scene(rate, delay, double_talk=False)
        ours = run_scene(ours_canceller(rate), scene, frame)
        linear, full = ours[:, 0], ours[:, 1]
        theirs = run_scene(SpeexAec(rate).process, scene, frame)
        half = linear.shape[0] // 2
        mic = scene.mic[half : linear.shape[0]]
        for name, out in (("ours linear", linear), ("ours (aec+res)", full), ("speex 200 ms", theirs)):
            result[name].append(float(10.0 * np.log10(np.sum(mic**2) / np.sum(out[half:] ** 2))))
    return result


def bench_drift(rate: int) -> dict[str, list[float]]:
    """ERLE (dB, second half of the scene) with the capture clock drifting against the far end."""
    frame = rate // 100
    result: dict[str, list[float]] = {"ours linear": [], "ours (aec+res)": [], "speex 200 ms": []}
    for ppm in DRIFTS_PPM:
        scene = echo_scene(rate, 120, double_talk=False, drift_ppm=ppm)
        ours = run_scene(ours_canceller(rate), scene, frame)
        theirs = run_scene(SpeexAec(rate).process, scene, frame)
        half = theirs.shape[0] // 2
        mic = scene.mic[half : theirs.shape[0]]
        for name, out in (
            ("ours linear", ours[:, 0]),
            ("ours (aec+res)", ours[:, 1]),
            ("speex 200 ms", theirs),
        ):
            result[name].append(float(10.0 * np.log10(np.sum(mic**2) / np.sum(out[half:] ** 2))))
    return result


def bench_double_talk(rate: int, delay_ms: int) -> dict[str, float]:
    frame = rate // 100
    scene = echo_scene(rate, delay_ms, double_talk=True)
    ours = run_scene(ours_canceller(rate), scene, frame)
    theirs = run_scene(SpeexAec(rate).process, scene, frame)
    n = theirs.shape[0]
    half = n // 2
    near = scene.near[half:n]
    outputs = {
        "unprocessed": scene.mic[:n],
        "ours linear": ours[:, 0],
        "ours (aec+res)": ours[:, 1],
        "speex 200 ms": theirs,
    }
    return {name: si_sdr(near, align(near, out[half:])) for name, out in outputs.items()}


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

    drift = bench_drift(16000)
    rows = [[name, *(f"{v:.1f}" for v in values)] for name, values in drift.items()]
    table(
        "ERLE with clock drift, 120 ms delay, 16 kHz (dB)",
        ["engine", *(f"{d} ppm" for d in DRIFTS_PPM)],
        rows,
    )

    for delay in (120, 250):
        dt = bench_double_talk(16000, delay)
        rows = [[name, f"{v:.1f}"] for name, v in dt.items()]
        table(f"Near-end SI-SDR in double talk, {delay} ms delay (dB)", ["engine", "SI-SDR"], rows)
        if dt["ours (aec+res)"] < dt["speex 200 ms"]:
            misses.append(f"double-talk SI-SDR at {delay} ms: ours {dt['ours (aec+res)']:.1f} dB < speex")

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
