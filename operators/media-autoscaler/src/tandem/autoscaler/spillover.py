"""Spillover between regions: demand a pool cannot serve, offered to its neighbours nearest first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tandem.v1.media_pb2 import RegionCapacity


def allocate(demand_calls: int, neighbours: Sequence[str], room: Mapping[str, int]) -> dict[str, int]:
    """Split `demand_calls` over `neighbours` in priority order, each taking up to its `room`
    (free plus headroom calls; unknown regions have none). What nobody has room for goes to the
    nearest neighbour, which scales towards it as far as its own max allows."""
    split: dict[str, int] = {}
    left = demand_calls
    for region in neighbours:
        take = min(left, max(0, room.get(region, 0)))
        if take:
            split[region] = take
            left -= take
    if left and neighbours:
        split[neighbours[0]] = split.get(neighbours[0], 0) + left
    return split


def room(report: RegionCapacity) -> int:
    """Calls a region can still take: free slots now plus what it can add before its max."""
    return report.free_calls + report.headroom_calls


def demand_for(region: str, reports: Iterable[RegionCapacity]) -> int:
    """Spillover calls other regions ask `region` to take, from their latest fresh reports."""
    return sum(r.spillover_to.get(region, 0) for r in reports if r.region != region)
