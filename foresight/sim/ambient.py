"""Harmless variation around the line: light flicker and drift, hands and passing shadows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foresight.sim.render import Nuisance
from foresight.sim.scene import smoothstep
from foresight.sim.sensors import NormalStream

LIGHT_CHANGE_SECONDS = 150.0  #: a lighting change completes over this long


class PoissonTimer:
    """Random events at ``per_hour`` on a clock that the caller advances (e.g. running time)."""

    def __init__(self, per_hour: float, rng: np.random.Generator) -> None:
        self.mean = 3600.0 / per_hour if per_hour > 0 else math.inf
        self.rng = rng
        self.clock = 0.0
        self.next = self._gap()

    def _gap(self) -> float:
        return float(self.rng.exponential(self.mean)) if math.isfinite(self.mean) else math.inf

    def tick(self, dt: float) -> bool:
        """Advance the clock; True when an event is due (it stays due until ``fired``)."""
        self.clock += dt
        return self.clock >= self.next

    def fired(self) -> None:
        """The due event happened: draw the next gap."""
        self.clock = 0.0
        self.next = self._gap()


class Lighting:
    """Per-channel light gain: mains flicker beating with the shutter, plus a lighting change."""

    def __init__(self, amplitude: float, change_at: float | None, rng: np.random.Generator):
        self.amp = amplitude
        self.change_at = change_at
        self.freq = float(rng.uniform(0.2, 0.6))
        self.phase = float(rng.uniform(0, 2 * math.pi))
        warm = float(rng.choice([-1.0, 1.0]))
        level = float(rng.uniform(0.86, 0.93))
        self.after = (level * (1 + 0.05 * warm), level, level * (1 - 0.07 * warm))
        self._n = NormalStream(rng)

    def gain(self, t: float) -> tuple[float, float, float]:
        """Light gain per RGB channel at time ``t``."""
        f = 1.0 + self.amp * (
            0.7 * math.sin(2 * math.pi * self.freq * t + self.phase)
            + 0.5 * max(-2.5, min(2.5, self._n()))
        )
        if self.change_at is None or t <= self.change_at:
            return (f, f, f)
        u = smoothstep((t - self.change_at) / LIGHT_CHANGE_SECONDS)
        return tuple(f * (1.0 + u * (a - 1.0)) for a in self.after)  # type: ignore[return-value]


@dataclass
class Disturbance:
    """One hand or shadow moving through the picture (ground truth, never labelled a fault)."""

    kind: str
    start: float
    duration: float
    x0: float
    x1: float
    y: float
    strength: float
    reason: str = "nuisance"

    @property
    def end(self) -> float:
        """Time it has left the picture."""
        return self.start + self.duration

    def at(self, t: float) -> Nuisance | None:
        """Its picture record at time ``t``, or None outside its lifetime."""
        u = (t - self.start) / self.duration
        if u < 0.0 or u > 1.0:
            return None
        if self.kind == "hand":
            reach = smoothstep(u / 0.3) * (1.0 - smoothstep((u - 0.7) / 0.3))
            wiggle = 0.8 * math.sin(9.0 * (t - self.start))
            x = self.x0 + (self.x1 - self.x0) * u + wiggle
            return Nuisance("hand", x, -4.0 + (self.y + 4.0) * reach, self.strength)
        x = self.x0 + (self.x1 - self.x0) * u
        fade = smoothstep(u / 0.2) * (1.0 - smoothstep((u - 0.8) / 0.2))
        return Nuisance("shadow", x, self.y, self.strength * fade)


def random_disturbance(rng: np.random.Generator, t: float) -> Disturbance:
    """A random nuisance starting at ``t``: a hand reaching in or a shadow passing, 1-3 s."""
    dur = float(rng.uniform(1.0, 3.0))
    if rng.random() < 0.5:
        x = float(rng.uniform(20.0, 115.0))
        return Disturbance(
            "hand",
            t,
            dur,
            x,
            x + float(rng.uniform(-6, 6)),
            float(rng.uniform(30.0, 62.0)),
            float(rng.integers(2)),
        )
    left = rng.random() < 0.5
    xa, xb = (-30.0, 160.0) if left else (160.0, -30.0)
    return Disturbance(
        "shadow", t, dur, xa, xb, float(rng.uniform(40.0, 90.0)), float(rng.uniform(0.2, 0.4))
    )


def clearing_hand(t_stop: float, x: float, stop_seconds: float) -> Disturbance:
    """The operator's hand reaching in to clear a jam at ``x`` during a stop."""
    dur = min(2.5, 0.5 * stop_seconds)
    return Disturbance("hand", t_stop + 0.3 * stop_seconds, dur, x, x + 2.0, 70.0, 0.0, "operator")


def changeover_hands(t: float, until: float) -> list[Disturbance]:
    """Hands adjusting the plow and the glue gun during a changeover stop (``t`` to ``until``)."""
    span = until - t
    dur = min(3.0, 0.25 * span)
    return [
        Disturbance("hand", t + frac * span, dur, x, x + 3.0, 56.0, 1.0, "operator")
        for frac, x in ((0.2, 34.0), (0.55, 49.0))
    ]
