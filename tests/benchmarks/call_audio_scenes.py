"""Echo scenes for the call-audio benchmark, built independently of how the canceller is tuned.

A scene is a phone lying on a table in a furnished room: the far end (what the worker forwarded) is
played by a small loudspeaker with a mild nonlinearity, reaches the microphone a few centimetres away
through a room simulated by ``pyroomacoustics`` (the direct path in the first few ms, reflections with
RT60 0.2-0.6 s), after a bulk delay (network, jitter buffer, device), possibly on a capture clock that
drifts against the far end's and with the bulk delay jumping once; a near-end talker (another voice,
another language) may speak over it from half a metre to a metre away, and the room has a noise floor.

Talkers are real recordings (``codec2-examples``: the 16 kHz ``speech_orig_16k.wav`` and the 8 kHz
raw recordings) and ``espeak-ng`` voices in several languages. Two sets are built: ``TUNING`` (what the
canceller may be tuned on) and ``HELD_OUT`` (other rooms, voices, languages and seeds, never tuned on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyroomacoustics as pra
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from tests.unit.dsp.signals import espeak

Signal = npt.NDArray[np.float64]

CODEC2 = Path("/usr/share/codec2/raw")
CODEC2_SPEECH = CODEC2 / "speech_orig_16k.wav"
SCENE_S = 20.0
"""Length of every echo scene (s); delay jumps happen at the middle."""
FAR_DBFS = -26.0
NOISE_DBFS = -70.0

SENTENCES: dict[str, str] = {
    "en-us": "Could you show me the blue one again, a little closer to the camera please? "
    "I think the medium size would fit me, but what about the return policy?",
    "en-gb": "That looks lovely. How long would shipping take to my city, and is there tracking? "
    "I would like to see the back of it as well, if you do not mind.",
    "de": "Können Sie mir die Jacke noch einmal von hinten zeigen? Ich glaube, Größe M passt mir, "
    "aber wie lange dauert der Versand nach Berlin?",
    "fr-fr": "Est-ce que vous pouvez me montrer la couleur rouge, s'il vous plaît? "
    "Je voudrais savoir si la livraison est gratuite pour deux articles.",
    "es": "¿Me puedes enseñar el bolso más de cerca? Me gusta mucho el color, "
    "pero quiero saber cuánto tarda el envío a Madrid.",
    "pt-br": "Você pode me mostrar o tamanho grande de novo? Eu gostei muito do tecido, "
    "mas preciso saber se dá para trocar depois.",
    "it": "Mi può far vedere il modello nero un'altra volta? Vorrei sapere se c'è uno sconto "
    "comprando due paia, e quanto costa la spedizione.",
    "nl": "Kunt u de schoenen nog een keer van dichtbij laten zien? Ik twijfel tussen maat "
    "achtendertig en negenendertig, wat raadt u aan?",
    "pl": "Czy może pani pokazać tę sukienkę jeszcze raz? Chciałabym wiedzieć, ile kosztuje "
    "wysyłka do Warszawy i czy mogę ją zwrócić.",
    "tr": "Bu çantayı biraz daha yakından gösterebilir misiniz? Rengi çok güzel, "  # noqa: RUF001
    "kargo İstanbul'a kaç günde gelir?",
    "id": "Bisa tunjukkan warna yang biru sekali lagi? Saya ingin tahu berapa lama "
    "pengiriman ke Jakarta dan apakah bisa ditukar.",
    "vi": "Bạn có thể cho tôi xem lại cái áo màu trắng không? Tôi muốn biết phí giao hàng đến Hà Nội là bao nhiêu.",
}


@dataclass(frozen=True)
class Talker:
    """A voice: a codec2 recording (``source`` a file name) or espeak-ng (``source`` a voice)."""

    source: str
    language: str = ""
    speed_wpm: int = 155


@dataclass(frozen=True)
class Scene:
    """How one scene is built; every random choice comes from ``seed``."""

    name: str
    far: Talker
    near: Talker | None = None
    delay_ms: float = 120.0
    jump_to_ms: float | None = None
    drift_ppm: float = 0.0
    rt60_s: float = 0.3
    echo_return_loss_db: float = 6.0
    nonlinearity: float = 0.15
    seed: int = 1


@dataclass(frozen=True)
class EchoScene:
    """A built scene at ``rate`` Hz: ``mic`` = ``echo`` + ``near`` + ``noise``, ``far`` the reference.

    ``near`` is the near-end talker as the microphone hears it (through the room); ``direct_ms`` is
    where the echo's direct path arrives in the first half (bulk delay + room), for the estimator.
    """

    spec: Scene
    rate: int
    far: Signal
    mic: Signal
    echo: Signal
    near: Signal
    direct_ms: float


def _level(x: Signal, dbfs: float) -> Signal:
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    return np.asarray(x * (10.0 ** (dbfs / 20.0) / rms), dtype=np.float64)


def _resample(x: Signal, rate_in: int, rate_out: int) -> Signal:
    g = np.gcd(rate_in, rate_out)
    return np.asarray(resample_poly(x, rate_out // g, rate_in // g), dtype=np.float64)


@cache
def speech(talker: Talker, rate: int, seconds: float) -> Signal:
    """``seconds`` of ``talker`` at ``rate`` Hz and ``FAR_DBFS`` (repeated with short pauses)."""
    if talker.source.endswith(".wav"):
        x, sr = sf.read(CODEC2 / talker.source, dtype="float64")
    elif talker.source.endswith(".raw"):
        x, sr = np.fromfile(CODEC2 / talker.source, dtype=np.int16).astype(np.float64) / 32768.0, 8000
    else:
        x, sr = espeak(talker.source, SENTENCES[talker.language], talker.speed_wpm)
    x = _resample(np.asarray(x, dtype=np.float64), int(sr), rate)
    pause = np.zeros(int(0.4 * rate))
    n = int(seconds * rate)
    reps = n // (x.shape[0] + pause.shape[0]) + 1
    return _level(np.tile(np.concatenate([x, pause]), reps)[:n], FAR_DBFS)


@cache
def room(rate: int, rt60_s: float, seed: int) -> tuple[Signal, Signal]:
    """(loudspeaker->mic, near talker->mic) impulse responses of a seeded shoebox room with a phone on
    a table: loudspeaker and microphone 5-15 cm apart, the talker 0.5-1 m away."""
    rng = np.random.default_rng(seed)
    dims = np.array([rng.uniform(3.0, 7.0), rng.uniform(3.0, 6.0), rng.uniform(2.5, 3.2)])
    absorption, max_order = pra.inverse_sabine(rt60_s, dims)
    pra.random.seed(seed)  # the randomized image sources draw from pyroomacoustics' own generators
    shoebox = pra.ShoeBox(
        dims, fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 40), use_rand_ism=True
    )
    mic = np.array([rng.uniform(1.0, dims[0] - 1.0), rng.uniform(1.0, dims[1] - 1.0), 0.75])
    angle = rng.uniform(0.0, 2.0 * np.pi)
    spacing = rng.uniform(0.05, 0.15)
    speaker = mic + spacing * np.array([np.cos(angle), np.sin(angle), 0.0])
    distance = rng.uniform(0.5, 1.0)
    talker = mic + np.array([distance * np.cos(angle + 2.0), distance * np.sin(angle + 2.0), 0.45])
    shoebox.add_source(speaker)
    shoebox.add_source(talker)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    length = int(0.8 * rate)
    rirs = []
    for source in range(2):
        r = np.zeros(length)
        h = np.asarray(shoebox.rir[0][source], dtype=np.float64)[:length]
        r[: h.shape[0]] = h
        rirs.append(r)
    return rirs[0], rirs[1]


def loudspeaker(x: Signal, rate: int, amount: float) -> Signal:
    """A small loudspeaker: no bass (2nd-order high-pass at 250 Hz) and a mild asymmetric saturation
    whose harmonics grow with ``amount`` (0 is linear; 0.15 is about -25 dB THD at full drive)."""
    sos = butter(2, 250.0, btype="highpass", fs=rate, output="sos")
    y = np.asarray(sosfilt(sos, x), dtype=np.float64)
    peak = float(np.max(np.abs(y))) + 1e-12
    u = y / peak
    return np.asarray(peak * (u + 0.5 * amount * u**2 - amount * u**3), dtype=np.float64)


def drifted(x: Signal, ppm: float) -> Signal:
    """``x`` as captured by a clock ``ppm`` fast (band-limited resampling, same length)."""
    if not ppm:
        return x
    ratio = Fraction(1.0 + ppm * 1e-6).limit_denominator(20000)
    y = np.asarray(resample_poly(x, ratio.numerator, ratio.denominator), dtype=np.float64)
    out = np.zeros_like(x)
    n = min(x.shape[0], y.shape[0])
    out[:n] = y[:n]
    return out


def pink_noise(n: int, seed: int) -> Signal:
    """Pink (1/f) noise of ``n`` samples, unit RMS."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return np.asarray(x / np.sqrt(np.mean(x**2)), dtype=np.float64)


def _convolve(x: Signal, h: Signal) -> Signal:
    size = x.shape[0] + h.shape[0]
    return np.asarray(np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.shape[0]])


def _delayed(x: Signal, samples: int) -> Signal:
    out = np.zeros_like(x)
    out[samples:] = x[: x.shape[0] - samples]
    return out


@lru_cache(maxsize=16)
def build(spec: Scene, rate: int) -> EchoScene:
    """The scene ``spec`` at ``rate`` Hz. The near talker (if any) speaks over the second half."""
    n = int(SCENE_S * rate)
    far = speech(spec.far, rate, SCENE_S)
    speaker_rir, talker_rir = room(rate, spec.rt60_s, spec.seed)
    wet = _convolve(loudspeaker(far, rate, spec.nonlinearity), speaker_rir)
    wet = _level(wet, FAR_DBFS - spec.echo_return_loss_db)
    echo = _delayed(wet, int(spec.delay_ms * rate / 1000))
    half = n // 2
    if spec.jump_to_ms is not None:
        echo[half:] = _delayed(wet, int(spec.jump_to_ms * rate / 1000))[half:]
    echo = drifted(echo, spec.drift_ppm)
    near = np.zeros(n)
    if spec.near is not None:
        voice = _convolve(speech(spec.near, rate, SCENE_S / 2), talker_rir)
        near[half:] = _level(voice, FAR_DBFS)[: n - half]
    noise = _level(pink_noise(n, spec.seed + 1000), NOISE_DBFS)
    onset = int(np.argmax(np.abs(speaker_rir) > 0.5 * np.max(np.abs(speaker_rir))))
    direct_ms = spec.delay_ms + 1000.0 * onset / rate
    return EchoScene(spec, rate, far, echo + near + noise, echo, near, direct_ms)


CODEC2_MAIN = Talker("speech_orig_16k.wav")
TUNING_FAR = (CODEC2_MAIN, Talker("en-us+m3", "en-us"), Talker("de+f2", "de"))
TUNING_NEAR = (Talker("fr-fr+f3", "fr-fr"), Talker("es+m1", "es"), Talker("en-gb+f4", "en-gb"))
HELD_OUT_FAR = (Talker("morig.raw"), Talker("pt-br+m2", "pt-br"), Talker("it+f1", "it"), Talker("nl+m4", "nl"))
HELD_OUT_NEAR = (
    Talker("pl+f2", "pl"),
    Talker("tr+m3", "tr"),
    Talker("id+f5", "id"),
    Talker("vi+m1", "vi"),
)


def scene_set(far: tuple[Talker, ...], near: tuple[Talker, ...], seed: int, rooms: int) -> list[Scene]:
    """One room per (far talker, near talker) pair, RT60 spread over 0.2-0.6 s; the same rooms are
    used at every bulk delay so the delays compare."""
    rng = np.random.default_rng(seed)
    return [
        Scene(
            name=f"room {i}",
            far=far[i % len(far)],
            near=near[i % len(near)],
            rt60_s=float(0.2 + 0.4 * i / max(1, rooms - 1)),
            echo_return_loss_db=float(rng.uniform(0.0, 10.0)),
            nonlinearity=float(rng.uniform(0.05, 0.25)),
            seed=seed * 100 + i,
        )
        for i in range(rooms)
    ]


TUNING = scene_set(TUNING_FAR, TUNING_NEAR, seed=1, rooms=3)
HELD_OUT = scene_set(HELD_OUT_FAR, HELD_OUT_NEAR, seed=7, rooms=4)


def far_only(scene: Scene, **changes: float | None) -> Scene:
    """``scene`` without its near talker, with ``changes`` (delay_ms, jump_to_ms, drift_ppm, ...)."""
    return replace(scene, near=None, **changes)  # type: ignore[arg-type]


def double_talk(scene: Scene, delay_ms: float) -> Scene:
    """``scene`` with its near talker over the second half, at ``delay_ms``."""
    return replace(scene, delay_ms=delay_ms)
