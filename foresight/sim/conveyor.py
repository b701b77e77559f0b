"""Carton kinematics: the feeder, the flighted belt, the photo-eye, the transfer and jams."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from foresight.sim import scene as sc
from foresight.sim.scene import Product

BELT, OUT, STUCK, PILED = 0, 1, 2, 3
STATUS_NAMES = ("belt", "outfeed", "stuck", "piled")


class Carton:
    """One carton on the line (mutable, owned by :class:`Conveyor`)."""

    __slots__ = (
        "id",
        "product",
        "length",
        "rel",
        "x",
        "y_jit",
        "angle",
        "flap_open",
        "status",
        "counted",
        "glue_ok",
        "press",
        "drift0",
    )

    def __init__(self, cid: int, product: int, length: float, rel: float, x: float) -> None:
        self.id = cid
        self.product = product
        self.length = length
        self.rel = rel
        self.x = x
        self.y_jit = 0.0
        self.angle = 0.0
        self.flap_open = sc.FLAP_OPEN_DEG
        self.status = BELT
        self.counted = False
        self.glue_ok = True
        self.press = 0.0
        self.drift0 = 0.0

    @property
    def front(self) -> float:
        """Leading-edge x (su)."""
        return self.x + self.length / 2

    @property
    def back(self) -> float:
        """Trailing-edge x (su)."""
        return self.x - self.length / 2


class Moved(NamedTuple):
    """What happened on the conveyor during one frame."""

    placed: int
    glue_shots: int
    counted: int
    transferred: int


def flight_x(belt_pos: float, n: int) -> float:
    """x of flight ``n`` (flights enter from the left as ``belt_pos`` grows)."""
    return belt_pos - n * sc.PITCH - 8.0


class Conveyor:
    """The flighted belt with its cartons; advanced by the drive one frame at a time."""

    def __init__(self, products: tuple[Product, ...], rng: np.random.Generator) -> None:
        self.products = products
        self.product = 0
        self.rng = rng
        self.belt_pos = 0.0
        self.drive_pos = 0.0
        self.next_flight = int(np.ceil((-8.0 - sc.X_PLACE) / sc.PITCH))
        self.cartons: list[Carton] = []
        self.count = 0
        self.good = 0
        self.stuck: int | None = None
        self.hold: int | None = None  #: faulty carton: it catches instead of transferring
        self.slip_drift = 0.0
        self._next_id = 0

    def _place(self, n: int) -> None:
        prod = self.products[self.product]
        gap = float(self.rng.uniform(0.1, 0.6))
        rel = -n * sc.PITCH - 8.0 + sc.FLIGHT_W / 2 + gap + prod.length / 2
        c = Carton(self._next_id, self.product, prod.length, rel, self.belt_pos + rel)
        c.y_jit = float(np.clip(self.rng.normal(0.0, 0.12), -0.3, 0.3))
        c.angle = float(np.clip(self.rng.normal(0.0, 0.45), -1.0, 1.0))
        c.flap_open = sc.FLAP_OPEN_DEG + float(self.rng.uniform(-6.0, 4.0))
        c.drift0 = self.slip_drift
        self._next_id += 1
        self.cartons.append(c)

    def advance(
        self, v_drive: float, slip: float, dt: float, feeding: bool, out_speed: float
    ) -> Moved:
        """Move everything by one frame: ``v_drive`` su/s at the drive, the belt ``slip`` behind."""
        v_belt = v_drive * (1.0 - slip)
        self.belt_pos += v_belt * dt
        self.drive_pos += v_drive * dt
        self.slip_drift += v_drive * slip * dt
        placed = 0
        while flight_x(self.belt_pos, self.next_flight) >= sc.X_PLACE:
            if feeding:
                self._place(self.next_flight)
                placed += 1
            self.next_flight += 1
        shots = counted = moved_out = 0
        limit: float | None = None
        keep: list[Carton] = []
        for c in self.cartons:
            if c.id == self.stuck:
                c.status = STUCK
            st = c.status
            if st == STUCK:
                limit = c.back
            elif st == PILED:
                c.press = max(c.press, self.belt_pos + c.rel - c.x)
                limit = c.back
            elif st == OUT:
                c.x += v_drive * out_speed * dt
                if c.back > sc.EXIT_X:
                    continue
            else:
                x_new = self.belt_pos + c.rel
                if limit is not None and x_new + c.length / 2 > limit - 0.1:
                    c.status = PILED
                    c.x = min(c.x, limit - 0.1 - c.length / 2)
                    c.press = x_new - c.x
                    limit = c.back
                else:
                    f0 = c.front
                    c.x = x_new
                    f1 = c.front
                    if f0 < sc.GLUE_X <= f1 and c.glue_ok:
                        shots += 1
                    if not c.counted and f1 >= sc.EYE_X:
                        c.counted = True
                        self.count += 1
                        counted += 1
                    if f1 >= sc.END_X + 0.5 and c.id != self.hold:
                        c.status = OUT
                        self.good += 1
                        moved_out += 1
            keep.append(c)
        self.cartons = keep
        return Moved(placed, shots, counted, moved_out)

    def clear_jam(self) -> int:
        """Remove the stuck and piled cartons (an operator clears the jam); returns how many."""
        before = len(self.cartons)
        self.cartons = [c for c in self.cartons if c.status in (BELT, OUT)]
        self.stuck = None
        return before - len(self.cartons)

    def on_belt(self) -> int:
        """Cartons riding the flighted belt (they load the drive)."""
        return sum(1 for c in self.cartons if c.status != OUT)

    def find(self, cid: int) -> Carton | None:
        """The carton with id ``cid`` if it is still on the line."""
        for c in self.cartons:
            if c.id == cid:
                return c
        return None

    def eye_blocked(self) -> bool:
        """True while a carton is under the photo-eye."""
        return any(c.back <= sc.EYE_X <= c.front for c in self.cartons)
