"""The ITU-T G.107 E-model: a transmission rating R and its MOS from delay, packet loss and codec.

Narrowband E-model, G.107 (06/2015) clauses 7.1-7.7 and Annex B, with the default values of its
Table 3 for every parameter a media worker cannot observe (loudness ratings, sidetone, room noise,
echo loss: a handset call with echo control). What a worker does observe goes in: the mean one-way
delay (ms), the random packet loss (%) and the codec's equipment impairment (G.113 Appendix I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Codec:
    """A codec's equipment impairment ``ie`` and packet-loss robustness ``bpl`` (G.113 Appendix I),
    and the delay it adds, ms: one frame of packetisation plus its look-ahead."""

    name: str
    ie: float
    bpl: float
    delay_ms: float


G711_PLC = Codec("pcmu", ie=0.0, bpl=25.1, delay_ms=10.0)
"""G.711 with its Appendix I packet-loss concealment, 10 ms frames."""

OPUS = Codec("opus", ie=0.0, bpl=25.1, delay_ms=20.0 + 6.5)
"""Opus has no narrowband G.113 values; it is rated as G.711 with concealment, a conservative
stand-in (Opus at WebRTC's bitrates is wideband and at least as robust), with its 20 ms frames and
6.5 ms look-ahead."""

CODECS = {codec.name: codec for codec in (G711_PLC, OPUS, replace(G711_PLC, name="pcma"))}


@dataclass(frozen=True, slots=True)
class Parameters:
    """The E-model's inputs (G.107 Table 3; defaults as there). Levels in dB, delays in ms,
    ``ppl`` in percent."""

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    dr: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    t: float = 0.0
    tr: float = 0.0
    ta: float = 0.0
    qdu: float = 1.0
    ie: float = 0.0
    bpl: float = 4.3
    ppl: float = 0.0
    burst_r: float = 1.0
    nc: float = -70.0
    nfor: float = -64.0
    ps: float = 35.0
    pr: float = 35.0
    a: float = 0.0
    # Delay sensitivity and minimum perceivable delay (G.107 2014 amendment; defaults for telephony).
    s_t: float = 1.0
    m_t: float = 100.0


def _noise(p: Parameters) -> float:
    """No: the total noise power referred to the 0 dBr point, dBm0p (G.107 7.2)."""
    olr = p.slr + p.rlr
    nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0) ** 2
    pre = p.pr + 10.0 * math.log10(1.0 + 10.0 ** ((10.0 - p.lstr) / 10.0))
    nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0) ** 2
    nfo = p.nfor + p.rlr
    return 10.0 * math.log10(sum(10.0 ** (n / 10.0) for n in (p.nc, nos, nor, nfo)))


def basic_snr(p: Parameters) -> float:
    """Ro, the basic signal-to-noise ratio (G.107 7.2)."""
    return 15.0 - 1.5 * (p.slr + _noise(p))


def simultaneous_impairment(p: Parameters) -> float:
    """Is = Iolr + Ist + Iq (G.107 7.3)."""
    no = _noise(p)
    ro = 15.0 - 1.5 * (p.slr + no)
    xolr = p.slr + p.rlr + 0.2 * (64.0 + no - p.rlr)
    iolr = 20.0 * ((1.0 + (xolr / 8.0) ** 8) ** (1.0 / 8.0) - xolr / 8.0)
    stmro = -10.0 * math.log10(10.0 ** (-p.stmr / 10.0) + math.exp(-p.t / 4.0) * 10.0 ** (-p.telr / 10.0))
    ist = (
        12.0 * (1.0 + ((stmro - 13.0) / 6.0) ** 8) ** (1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4) ** 35) ** (1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0) ** 13) ** (1.0 / 13.0)
        + 29.0
    )
    q = 37.0 - 15.0 * math.log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    iq = 15.0 * math.log10(1.0 + 10.0**y + 10.0**z)
    return float(iolr + ist + iq)


def delay_impairment(p: Parameters) -> float:
    """Id = Idte + Idle + Idd (G.107 7.4): talker echo, listener echo, absolute delay."""
    no = _noise(p)
    ro = 15.0 - 1.5 * (p.slr + no)
    if p.t < 1.0:
        idte = 0.0  # an echo this early is heard as sidetone
    else:
        terv = p.telr - 40.0 * math.log10((1.0 + p.t / 10.0) / (1.0 + p.t / 150.0)) + 6.0 * math.exp(-0.3 * p.t**2)
        roe = -1.5 * (no - p.rlr)
        re = 80.0 + 2.5 * (terv - 14.0)
        idte = ((roe - re) / 2.0 + math.sqrt((roe - re) ** 2 / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-p.t))
    rle = 10.5 * (p.wepl + 7.0) * (p.tr + 1.0) ** -0.25
    idle = (ro - rle) / 2.0 + math.sqrt((ro - rle) ** 2 / 4.0 + 169.0)
    idd = 0.0
    if p.ta > p.m_t:
        x = math.log10(p.ta / p.m_t) / math.log10(2.0)
        k = 6.0 * p.s_t
        idd = 25.0 * ((1.0 + x**k) ** (1.0 / k) - 3.0 * (1.0 + (x / 3.0) ** k) ** (1.0 / k) + 2.0)
    return float(idte + idle + idd)


def effective_equipment_impairment(p: Parameters) -> float:
    """Ie,eff: the codec's impairment under random packet loss (G.107 7.5)."""
    return p.ie + (95.0 - p.ie) * p.ppl / (p.ppl / p.burst_r + p.bpl)


def rating(p: Parameters) -> float:
    """R = Ro - Is - Id - Ie,eff + A (G.107 7.1)."""
    return basic_snr(p) - simultaneous_impairment(p) - delay_impairment(p) - effective_equipment_impairment(p) + p.a


def mos_from_r(r: float) -> float:
    """The estimated conversational MOS (1..4.5) of a rating R (G.107 Annex B). The cubic dips just
    below 1 for 0 < R < 6.5; it is held at 1 there, so MOS never decreases as R grows."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return max(1.0, 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6)


@dataclass(frozen=True, slots=True)
class Rating:
    r: float
    mos: float


def rate_call(one_way_delay_ms: float, loss_fraction: float, codec: Codec) -> Rating:
    """R and MOS of a VoIP call with echo control: mean one-way (mouth-to-ear) delay in ms, random
    packet loss as a fraction 0..1. The echo paths' delays follow the one-way delay (T = Ta,
    Tr = 2 Ta), as for a VoIP call whose echo is cancelled to the default TELR and WEPL."""
    if not (math.isfinite(one_way_delay_ms) and one_way_delay_ms >= 0.0):
        raise ValueError(f"one-way delay must be a finite number of ms >= 0, got {one_way_delay_ms}")
    if not 0.0 <= loss_fraction <= 1.0:
        raise ValueError(f"loss fraction must be within 0..1, got {loss_fraction}")
    t = one_way_delay_ms
    r = rating(Parameters(t=t, tr=2.0 * t, ta=t, ie=codec.ie, bpl=codec.bpl, ppl=100.0 * loss_fraction))
    return Rating(r=r, mos=mos_from_r(r))
