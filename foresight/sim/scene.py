"""Geometry and appearance of the simulated cartoner: layout, camera, palette and products.

Positions are in *scene units* (su): the reference view is 128 x 128 su, x to the right, y down,
one flight pitch is 12.8 su (0.15 m). The camera maps scene units to pixels with a zoom and an
offset that depend on the line variant (``SimConfig.appearance_seed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# --- layout (scene units, y down) -------------------------------------------------------------
PITCH = 12.8  #: distance between flights
M_PER_SU = 0.15 / PITCH  #: metres per scene unit
BELT_TOP = 78.0  #: carry strand surface; carton bottoms rest here
BELT_THICK = 2.4
FLIGHT_W = 1.6
FLIGHT_H = 4.0
RETURN_TOP = 92.0  #: return strand (moves left, flights hanging down)
X_PLACE = 2.0  #: a flight passing here gets a carton from the feeder
FEEDER_X1 = 15.0  #: right edge of the feeder housing (cartons appear from under it)
PLOW_X0, PLOW_X1 = 19.0, 40.0  #: the plow folds the top flap between these x
GLUE_X = 47.0  #: hot-melt gun
EYE_X = 103.0  #: photo-eye: a carton's leading edge crossing this x is counted
END_X = 110.0  #: head pulley centre: the end of the carry strand (the transfer)
OUT_X0 = 112.0  #: start of the outfeed belt
OUT_TOP = 82.0  #: outfeed surface (lower than the carry strand)
OUT_SPEED = 1.3  #: outfeed speed relative to the flighted belt
EXIT_X = 140.0  #: cartons beyond this x leave the scene
FLAP_OPEN_DEG = 78.0  #: flap angle before the plow (from horizontal)
FLAP_THICK = 1.1

PULLEY_CY = (BELT_TOP + BELT_THICK / 2 + RETURN_TOP + BELT_THICK / 2) / 2
PULLEY_R = (RETURN_TOP - BELT_TOP) / 2 - 0.2


def smoothstep(u: float) -> float:
    """Cubic ease from 0 to 1 on [0, 1], clamped outside."""
    if u <= 0.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    return u * u * (3.0 - 2.0 * u)


def plow_flap_angle(x_back: float, open_deg: float) -> float:
    """Flap angle (degrees) of a carton whose back edge is at ``x_back``, as set by the plow."""
    return open_deg * (1.0 - smoothstep((x_back - PLOW_X0) / (PLOW_X1 - PLOW_X0)))


@dataclass(frozen=True)
class Camera:
    """Affine map from scene units to pixels (optionally supersampled)."""

    ax: float
    bx: float
    ay: float
    by: float

    @classmethod
    def make(cls, width: int, height: int, zoom: float, dx: float, dy: float) -> Camera:
        """Camera centred on the reference view, scaled to cover ``width`` x ``height`` pixels."""
        s = max(width, height) / 128.0
        a = zoom * s
        bx = (64.0 * (1 - zoom) + dx) * s + (width - 128.0 * s) / 2
        by = (64.0 * (1 - zoom) + dy) * s + (height - 128.0 * s) / 2
        return cls(a, bx, a, by)

    def scaled(self, k: float) -> Camera:
        """The same view at ``k`` times the resolution (for supersampled drawing)."""
        return Camera(self.ax * k, self.bx * k, self.ay * k, self.by * k)

    def px(self, pts: np.ndarray) -> np.ndarray:
        """Scene points (N, 2) to fixed-point pixel coordinates (4 fractional bits), int32."""
        out = np.empty(pts.shape, np.float64)
        out[:, 0] = pts[:, 0] * (self.ax * 16.0) + (self.bx * 16.0 - 8.0)
        out[:, 1] = pts[:, 1] * (self.ay * 16.0) + (self.by * 16.0 - 8.0)
        return out.astype(np.int32)

    @property
    def scale(self) -> float:
        """Pixels per scene unit."""
        return self.ax


Color = tuple[int, int, int]


@dataclass(frozen=True)
class Product:
    """One carton variant: size (su) and print."""

    name: str
    length: float
    height: float
    body: Color
    end_face: Color
    band: Color
    logo: Color
    flap: Color
    pattern: str
    band_lo: float
    band_hi: float
    logo_x: float
    logo_y: float

    def local_polys(self) -> tuple[np.ndarray, list[tuple[int, int, Color]]]:
        """Carton-local vertices (x right, y up, origin bottom centre) and (start, end, colour)."""
        h, w = self.length / 2, self.height
        verts = [(-h, 0), (h, 0), (h, w), (-h, w)]
        spans: list[tuple[int, int, Color]] = [(0, 4, self.body)]
        verts += [(h - 1.0, 0), (h, 0), (h, w), (h - 1.0, w)]
        spans.append((4, 8, self.end_face))
        lo, hi = self.band_lo * w, self.band_hi * w
        lift = 0.25 * w if self.pattern == "diagonal" else 0.0
        verts += [(-h, lo), (h - 1.0, lo + lift), (h - 1.0, hi + lift), (-h, hi)]
        spans.append((8, 12, self.band))
        if self.pattern != "plain":
            r = 1.3 if self.length > 8.4 else 1.0
            lx, ly = self.logo_x * h, self.logo_y * w
            verts += [(lx - r, ly - r), (lx + r, ly - r), (lx + r, ly + r), (lx - r, ly + r)]
            spans.append((12, 16, self.logo))
        return np.asarray(verts, np.float64), spans


@dataclass(frozen=True)
class Palette:
    """Colours of the machine and its surroundings (RGB)."""

    wall: Color
    wall_dark: Color
    frame: Color
    frame_dark: Color
    guard: Color
    belt: Color
    belt_edge: Color
    flight: Color
    cabinet: Color
    steel: Color
    glove: Color


_FRAMES: tuple[Color, ...] = (
    (176, 180, 184),  # brushed stainless
    (52, 86, 140),  # RAL blue
    (214, 206, 182),  # cream
    (70, 112, 86),  # machine green
    (112, 116, 122),  # grey
)
_BELTS: tuple[Color, ...] = (
    (42, 68, 52),
    (34, 35, 38),
    (44, 62, 108),
    (92, 94, 98),
    (150, 150, 140),
)
_FLIGHTS: tuple[Color, ...] = ((222, 188, 42), (206, 206, 198), (222, 122, 40), (150, 155, 160))
_WALLS: tuple[Color, ...] = ((96, 98, 96), (120, 116, 106), (70, 78, 86), (132, 136, 138))
_GLOVES: tuple[Color, ...] = ((70, 110, 190), (40, 40, 44), (222, 222, 214), (196, 150, 120))
_PRINTS: tuple[Color, ...] = (
    (236, 234, 226),
    (182, 144, 100),
    (196, 48, 44),
    (40, 88, 168),
    (54, 132, 70),
    (232, 196, 50),
    (120, 60, 130),
    (36, 36, 40),
    (230, 120, 40),
)
_PATTERNS: tuple[str, ...] = ("band", "diagonal", "top", "plain")


def _shade(c: Color, k: float) -> Color:
    return tuple(int(min(255, max(0, round(v * k)))) for v in c)  # type: ignore[return-value]


def _pick(rng: np.random.Generator, seq: tuple) -> object:
    return seq[int(rng.integers(len(seq)))]


def make_product(rng: np.random.Generator, index: int) -> Product:
    """A random but plausible carton variant."""
    body = _pick(rng, _PRINTS)
    others = [c for c in _PRINTS if c != body]
    band = others[int(rng.integers(len(others)))]
    logo = others[int(rng.integers(len(others)))]
    pattern = str(_pick(rng, _PATTERNS))
    lo = float(rng.uniform(0.25, 0.55))
    if pattern == "top":
        lo = float(rng.uniform(0.62, 0.75))
    hi = min(0.95, lo + float(rng.uniform(0.12, 0.28)))
    return Product(
        name=f"P{index}",
        length=float(rng.uniform(7.6, 9.6)),
        height=float(rng.uniform(9.0, 14.0)),
        body=body,  # type: ignore[arg-type]
        end_face=_shade(body, 0.78),  # type: ignore[arg-type]
        band=band,
        logo=logo,
        flap=_shade(body, 0.88),  # type: ignore[arg-type]
        pattern=pattern,
        band_lo=lo,
        band_hi=hi,
        logo_x=float(rng.uniform(-0.3, 0.2)),
        logo_y=float(rng.uniform(0.15, 0.35)) if lo > 0.45 else float(rng.uniform(0.7, 0.85)),
    )


@dataclass(frozen=True)
class Appearance:
    """Everything that makes one line look different from another."""

    palette: Palette
    products: tuple[Product, ...]
    zoom: float
    dx: float
    dy: float
    vignette: float
    glare: float

    @classmethod
    def from_seed(cls, seed: int, n_products: int) -> Appearance:
        """Deterministic line variant for ``seed``."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA11E]))
        frame = _pick(rng, _FRAMES)
        wall = _pick(rng, _WALLS)
        pal = Palette(
            wall=wall,  # type: ignore[arg-type]
            wall_dark=_shade(wall, 0.55),  # type: ignore[arg-type]
            frame=frame,  # type: ignore[arg-type]
            frame_dark=_shade(frame, 0.62),  # type: ignore[arg-type]
            guard=_shade(wall, 1.15),  # type: ignore[arg-type]
            belt=_pick(rng, _BELTS),  # type: ignore[arg-type]
            belt_edge=_shade(_pick(rng, _BELTS), 0.7),  # type: ignore[arg-type]
            flight=_pick(rng, _FLIGHTS),  # type: ignore[arg-type]
            cabinet=_shade(frame, float(rng.uniform(0.75, 0.95))),  # type: ignore[arg-type]
            steel=(168, 172, 176),
            glove=_pick(rng, _GLOVES),  # type: ignore[arg-type]
        )
        products = tuple(make_product(rng, i) for i in range(n_products))
        return cls(
            palette=pal,
            products=products,
            zoom=float(rng.uniform(0.94, 1.06)),
            dx=float(rng.uniform(-3.0, 3.0)),
            dy=float(rng.uniform(-3.0, 3.0)),
            vignette=float(rng.uniform(0.12, 0.3)),
            glare=float(rng.uniform(0.0, 14.0)),
        )


def rotate_local(verts: np.ndarray, angle_deg: float, pivot_x: float) -> np.ndarray:
    """Rotate carton-local vertices (y up) by ``angle_deg`` counter-clockwise about (pivot_x, 0)."""
    if angle_deg == 0.0:
        return verts
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    x = verts[:, 0] - pivot_x
    y = verts[:, 1]
    out = np.empty_like(verts)
    out[:, 0] = x * c - y * s + pivot_x
    out[:, 1] = x * s + y * c
    return out


def flap_verts(length: float, height: float, angle_deg: float) -> np.ndarray:
    """Carton-local quad of the top flap, hinged at the back top edge, ``angle_deg`` up."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    hx, hy = -length / 2, height
    lf = length * 0.96
    tx, ty = hx + lf * c, hy + lf * s
    nx, ny = -s * FLAP_THICK, c * FLAP_THICK
    return np.array([(hx, hy), (tx, ty), (tx + nx, ty + ny), (hx + nx, hy + ny)], np.float64)
