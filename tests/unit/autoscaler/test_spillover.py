"""Spillover demand split over neighbour regions in priority order."""

from __future__ import annotations

import pytest

from tandem.autoscaler.spillover import allocate, demand_for
from tandem.v1.media_pb2 import RegionCapacity

pytestmark = pytest.mark.unit


def test_nearest_neighbour_takes_what_it_has_room_for_first() -> None:
    assert allocate(50, ["eu", "us"], {"eu": 30, "us": 100}) == {"eu": 30, "us": 20}


def test_demand_nobody_has_room_for_goes_to_the_nearest() -> None:
    assert allocate(50, ["eu", "us"], {"eu": 10}) == {"eu": 50}
    assert allocate(50, [], {"eu": 10}) == {}


def test_a_region_counts_what_others_ask_of_it() -> None:
    reports = [
        RegionCapacity(region="ap", spillover_to={"eu": 12, "us": 3}),
        RegionCapacity(region="us", spillover_to={"eu": 5}),
        RegionCapacity(region="eu", spillover_to={"eu": 99}),  # its own report never counts
    ]
    assert demand_for("eu", reports) == 17
