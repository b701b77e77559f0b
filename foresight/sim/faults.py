"""Fault precursors: which carton, how it looks as the precursor grows, and how it resolves.

A fault is a ground-truth record (:class:`FaultEvent`); its picture is carried by a few numbers
(:class:`FaultLook`) that the line adds to one carton's pose or to the belt speed. Nothing here is
ever drawn as a marker: only the physical deviation is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from foresight.sim import scene as sc

RESOLVE_TAU = 0.3  #: seconds; a resolved precursor decays with this time constant
RESOLVED_BELOW = 0.01  #: severity below which a resolving precursor is gone
MIN_TRAVEL = 0.6  #: seconds; never pick a carton closer than this to the transfer
SLIP_MAX = 0.05  #: belt_slip: belt runs this fraction behind the drive at jam onset
GLUE_DIP_BAR = 0.12  #: glue_miss: size of the manifold pressure dip


@dataclass
class FaultEvent:
    """Ground truth of one fault (absolute seconds since the start of the simulation)."""

    kind: str
    carton: int
    precursor_start: float
    jam_at: float  #: when the jam forms unless the feeder slows in time
    setpoint_at_start: float  #: applied feeder setpoint at precursor start (cartons/min)
    sign: float = 1.0
    jam_onset: float | None = None
    stopped_at: float | None = None
    line_stopped_until: float | None = None
    mitigated_at: float | None = None
    severity: float = 0.0
    ended: bool = False

    @property
    def duration(self) -> float:
        """Scheduled precursor length, seconds."""
        return self.jam_at - self.precursor_start

    @property
    def averted(self) -> bool:
        """True once the precursor was resolved by a slow-down (no jam)."""
        return self.mitigated_at is not None


class FaultLook(NamedTuple):
    """What a fault currently does to the picture and the drive (zeros: no effect)."""

    extra_flap: float = 0.0  #: degrees added to the faulty carton's flap
    tilt: float = 0.0  #: degrees of tilt of the faulty carton in its pocket
    double_dx: float = 0.0  #: offset (su) of a second carton behind the faulty one
    double_dy: float = 0.0
    double: bool = False
    slip: float = 0.0  #: fraction the belt runs behind the drive
    flap_after_glue: bool = False  #: extra_flap applies only once past the glue gun


NO_LOOK = FaultLook()


def severity(ev: FaultEvent, t: float) -> float:
    """Precursor severity in [0, 1] at time ``t``: grows to 1 at the jam, decays once resolved."""
    if ev.mitigated_at is not None:
        s0 = min(1.0, max(0.0, (ev.mitigated_at - ev.precursor_start) / max(ev.duration, 1e-6)))
        return s0 * math.exp(-(t - ev.mitigated_at) / RESOLVE_TAU)
    if ev.jam_onset is not None:
        return 1.0
    return min(1.0, max(0.0, (t - ev.precursor_start) / max(ev.duration, 1e-6)))


def look(ev: FaultEvent, s: float, t: float) -> FaultLook:
    """The visible effect of fault ``ev`` at severity ``s`` (time ``t`` adds a little flutter)."""
    k = ev.kind
    if k == "flap_rise":
        flutter = 1.2 * s * math.sin(17.0 * t)
        return FaultLook(extra_flap=1.5 * min(1.0, s * 8) + 25.0 * s**1.4 + flutter)
    if k == "skew":
        return FaultLook(tilt=ev.sign * (2.0 * min(1.0, s * 8) + 8.0 * s))
    if k == "double_feed":
        on = min(1.0, s * 8)
        return FaultLook(
            double_dx=-(0.6 * on + 2.0 * s), double_dy=-(1.0 * on + 2.6 * s), double=s > 0.0
        )
    if k == "glue_miss":
        spring = (1.0 - math.exp(-3.0 * s)) / (1.0 - math.exp(-3.0))
        return FaultLook(
            extra_flap=24.0 * spring + 0.8 * s * math.sin(13.0 * t), flap_after_glue=True
        )
    if k == "belt_slip":
        return FaultLook(slip=SLIP_MAX * s)
    raise ValueError(f"unknown fault type {k!r}")


def glue_dip(ev: FaultEvent, t: float) -> float:
    """Glue-pressure dip (bar) of a glue_miss around its start; 0 for other faults."""
    if ev.kind != "glue_miss":
        return 0.0
    u = (t - ev.precursor_start + 0.1) / 0.5
    if u <= 0.0 or u >= 1.0:
        return 0.0
    return GLUE_DIP_BAR * math.sin(math.pi * u) ** 2


def jam_point(length: float) -> float:
    """Carton centre x at which a faulty carton catches at the transfer."""
    return sc.END_X + 0.4 - length / 2


def earliest_back(kind: str) -> float:
    """Smallest back-edge x at which a carton may start a ``kind`` precursor."""
    if kind == "flap_rise":
        return sc.PLOW_X1 + 1.0
    if kind == "glue_miss":
        return sc.FEEDER_X1 + 1.0
    return sc.FEEDER_X1 + 1.0


def pick_carton(
    kind: str, cands: list[tuple[int, float, float]], speed: float, want: float, dt: float
) -> tuple[int, float] | None:
    """Choose (carton id, precursor seconds) for a fault of ``kind``.

    ``cands`` holds (id, centre x, length) of healthy cartons on the belt, ``speed`` is the belt
    speed in su/s and ``want`` the drawn precursor length. The carton is chosen so that it reaches
    the transfer when the precursor ends (a glue miss starts at the carton about to pass under the
    glue gun, within the next ``dt``-dependent window, so the gun skips it).
    """
    if speed <= 0:
        return None
    best: tuple[float, int, float] | None = None
    for cid, x, length in cands:
        back, front = x - length / 2, x + length / 2
        travel = (jam_point(length) - x) / speed
        if back < earliest_back(kind) or travel < MIN_TRAVEL:
            continue
        if kind == "glue_miss":
            if not (sc.GLUE_X - speed * max(0.1, 1.5 * dt) <= front < sc.GLUE_X):
                continue
            return cid, min(want, travel)
        score = abs(travel - want)
        if best is None or score < best[0]:
            best = (score, cid, travel)
    if best is None:
        return None
    return best[1], best[2]
