"""A call's two legs: the worker's WebRTC connection to each party."""

from __future__ import annotations

from typing import TypeAlias

from tandem.v1 import media_pb2

Leg: TypeAlias = media_pb2.Leg.ValueType
LEGS: tuple[Leg, Leg] = (media_pb2.LEG_SHOPPER, media_pb2.LEG_HOST)


def other(leg: Leg) -> Leg:
    """The leg of the other party."""
    return media_pb2.LEG_HOST if leg == media_pb2.LEG_SHOPPER else media_pb2.LEG_SHOPPER
