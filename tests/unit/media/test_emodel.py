"""The E-model against ITU-T G.107's published values, and the invariants a MOS must keep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.media import emodel

pytestmark = pytest.mark.unit

delays = st.floats(min_value=0.0, max_value=2000.0)
losses = st.floats(min_value=0.0, max_value=1.0)
codecs = st.sampled_from(sorted(emodel.CODECS.values(), key=lambda c: c.name))


def test_default_parameters_rate_93_2() -> None:
    # G.107 clause 7.7: with every parameter at its default the rating is R = 93.2.
    assert emodel.rating(emodel.Parameters()) == pytest.approx(93.2, abs=0.05)
    assert emodel.mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)


@pytest.mark.parametrize(("r", "mos"), [(50, 2.58), (60, 3.10), (70, 3.60), (80, 4.03), (90, 4.34), (100, 4.5)])
def test_mos_at_the_rating_category_boundaries(r: float, mos: float) -> None:
    # G.107 Annex B / G.109 Table 1: the MOS at the lower limit of each user-satisfaction category.
    assert emodel.mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_random_loss_impairs_as_g113_codecs_do() -> None:
    # Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl): G.729A (Ie 11, Bpl 19) at 2 % random loss.
    assert emodel.effective_equipment_impairment(emodel.Parameters(ie=11, bpl=19, ppl=2)) == pytest.approx(19.0)
    loss_free = emodel.rate_call(0.0, 0.0, emodel.G711_PLC).r
    assert loss_free - emodel.rate_call(0.0, 0.02, emodel.G711_PLC).r == pytest.approx(95 * 2 / 27.1, abs=1e-9)


def test_delay_below_the_perceivable_minimum_costs_no_absolute_delay_impairment() -> None:
    assert emodel.delay_impairment(emodel.Parameters(ta=100.0)) == emodel.delay_impairment(emodel.Parameters(ta=0.0))
    assert emodel.delay_impairment(emodel.Parameters(ta=400.0)) > emodel.delay_impairment(emodel.Parameters(ta=100.0))


@pytest.mark.parametrize(("delay", "loss"), [(-1.0, 0.0), (math.nan, 0.0), (math.inf, 0.0), (0.0, -0.1), (0.0, 1.5)])
def test_impossible_inputs_are_refused(delay: float, loss: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        emodel.rate_call(delay, loss, emodel.OPUS)


@given(delays, losses, codecs)
def test_mos_stays_between_1_and_4_5(delay: float, loss: float, codec: emodel.Codec) -> None:
    assert 1.0 <= emodel.rate_call(delay, loss, codec).mos <= 4.5


@given(delays, losses, losses, codecs)
def test_more_loss_never_rates_better(delay: float, a: float, b: float, codec: emodel.Codec) -> None:
    low, high = sorted((a, b))
    assert emodel.rate_call(delay, high, codec).mos <= emodel.rate_call(delay, low, codec).mos


@given(st.floats(min_value=1.0, max_value=2000.0), st.floats(min_value=1.0, max_value=2000.0), losses, codecs)
def test_more_delay_never_rates_better(a: float, b: float, loss: float, codec: emodel.Codec) -> None:
    # From 1 ms on: below it G.107 hears the talker echo as sidetone (Idte = 0).
    short, long = sorted((a, b))
    assert emodel.rate_call(long, loss, codec).r <= emodel.rate_call(short, loss, codec).r + 1e-9


@given(st.floats(min_value=-50.0, max_value=150.0), st.floats(min_value=-50.0, max_value=150.0))
def test_mos_never_decreases_as_r_grows(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert emodel.mos_from_r(low) <= emodel.mos_from_r(high)
