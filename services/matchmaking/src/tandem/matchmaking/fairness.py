"""Fairness over waiting time: aging and the bullseye rings that relax as a shopper waits.

Aging: every second of waiting adds `aging_per_second` points to all of a shopper's cells, so once a
shopper has waited longer than another by more than `overtake_bound_s`, no host's fit can make the
solver serve the newcomer instead (the aged row wins every host both may take).

Rings: for the first `previous_host_s` a returning shopper is offered only a host they bought from
(when one is online in their market and has not declined them or let them ring out), then until
`category_s` only hosts skilled in the category (when any such is online), then any host speaking
the language in their market.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class Ring(enum.IntEnum):
    PREVIOUS_HOST = 0
    CATEGORY = 1
    LANGUAGE = 2


@dataclass(frozen=True)
class Relaxation:
    aging_per_second: float = 5.0
    previous_host_s: float = 10.0
    category_s: float = 20.0


def ring_of(waited_s: float, relaxation: Relaxation, *, previous_present: bool, category_present: bool) -> Ring:
    """The innermost ring a shopper who has waited `waited_s` seconds is still held to. A ring whose
    hosts are not online at all is skipped: waiting for them would be waiting for nobody."""
    if previous_present and waited_s < relaxation.previous_host_s:
        return Ring.PREVIOUS_HOST
    if category_present and waited_s < relaxation.category_s:
        return Ring.CATEGORY
    return Ring.LANGUAGE


def ring_left_s(waited_s: float, ring: Ring, relaxation: Relaxation) -> float:
    """Seconds until a shopper who has waited `waited_s` and is held to `ring` is let out of it;
    0 in the outermost."""
    if ring is Ring.PREVIOUS_HOST:
        return max(0.0, relaxation.previous_host_s - waited_s)
    if ring is Ring.CATEGORY:
        return max(0.0, relaxation.category_s - waited_s)
    return 0.0


def aging_bonus(waited_s: npt.NDArray[np.float64], relaxation: Relaxation) -> npt.NDArray[np.float64]:
    """Priority points per shopper for seconds waited."""
    return np.maximum(0.0, waited_s) * relaxation.aging_per_second


def overtake_bound_s(max_cell: float, relaxation: Relaxation) -> float:
    """Seconds of extra waiting after which a shopper is always served before a newer one who may
    take the same hosts (`max_cell`: the most points a host adds to one shopper's row)."""
    return max_cell / relaxation.aging_per_second
