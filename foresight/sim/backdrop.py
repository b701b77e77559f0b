"""Static parts of the picture, drawn once per product: machine, belt phases and foreground.

Everything here runs at start-up or at a changeover, supersampled and then reduced with area
interpolation, so it can afford many drawing calls.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from foresight.sim import scene as sc
from foresight.sim.scene import Camera, Color, Palette, Product

AA = cv2.LINE_AA


def _poly(img: np.ndarray, cam: Camera, pts: list[tuple[float, float]], color: Color) -> None:
    cv2.fillConvexPoly(img, cam.px(np.asarray(pts, np.float64)), color, AA, 4)


def _rect(
    img: np.ndarray, cam: Camera, x0: float, y0: float, x1: float, y1: float, c: Color
) -> None:
    _poly(img, cam, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], c)


def _line(img: np.ndarray, cam: Camera, p, q, color: Color, width_su: float) -> None:
    a = cam.px(np.asarray([p, q], np.float64))
    t = max(1, int(round(width_su * cam.scale)))
    cv2.line(img, tuple(int(v) for v in a[0]), tuple(int(v) for v in a[1]), color, t, AA, 4)


def _circle(img: np.ndarray, cam: Camera, c, r_su: float, color: Color, fill: bool = True) -> None:
    p = cam.px(np.asarray([c], np.float64))[0]
    r = int(round(r_su * cam.scale * 16))
    t = -1 if fill else max(1, int(round(0.6 * cam.scale)))
    cv2.circle(img, (int(p[0]), int(p[1])), r, color, t, AA, 4)


def _shade(c: Color, k: float) -> Color:
    return tuple(int(min(255, max(0, round(v * k)))) for v in c)  # type: ignore[return-value]


def _wall(img: np.ndarray, cam: Camera, pal: Palette) -> None:
    """Back wall with a gradient, a cable tray, a valve bank and frame posts."""
    for i in range(12):
        y0 = -20 + i * 14
        _rect(img, cam, -30, y0, 160, y0 + 14, _shade(pal.wall, 1.08 - 0.035 * i))
    _rect(img, cam, -30, 26, 160, 29, pal.wall_dark)  # cable tray
    _rect(img, cam, -30, 29, 160, 30, _shade(pal.wall, 1.2))
    _rect(img, cam, 76, 34, 94, 44, _shade(pal.steel, 0.8))  # valve bank
    for k in range(5):
        _rect(img, cam, 77.5 + 3.3 * k, 35.5, 79.5 + 3.3 * k, 42.5, (60, 64, 70))
        _circle(img, cam, (78.5 + 3.3 * k, 44.8), 0.7, (40, 120, 200))
    _line(img, cam, (85, 34), (85, 20), (40, 40, 44), 0.8)  # air hose
    for x in (28.0, 70.0, 97.0):
        _rect(img, cam, x - 1.8, 14, x + 1.8, 90, pal.frame_dark)
        _rect(img, cam, x - 1.8, 14, x - 0.9, 90, _shade(pal.frame, 0.85))
    _rect(img, cam, -30, 11, 160, 18, pal.frame)  # overhead beam
    _rect(img, cam, -30, 11, 160, 12, _shade(pal.frame, 1.15))
    _rect(img, cam, -30, 17, 160, 18, pal.frame_dark)
    _rect(img, cam, -30, -20, 160, 11, _shade(pal.guard, 0.95))  # upper guard panel
    for x in (-2.0, 48.0, 98.0):
        _rect(img, cam, x, -20, x + 2.0, 11, pal.frame_dark)


def _cabinet(img: np.ndarray, cam: Camera, pal: Palette) -> None:
    """Machine base below the conveyor, and the outfeed conveyor frame."""
    _rect(img, cam, -30, 99, 160, 150, pal.cabinet)
    _rect(img, cam, -30, 99, 160, 100.2, _shade(pal.cabinet, 1.2))
    for x in (30.0, 76.0):
        _rect(img, cam, x, 101, x + 0.7, 150, _shade(pal.cabinet, 0.7))
    for k in range(6):
        _rect(img, cam, 40 + 4 * k, 108, 42 + 4 * k, 120, _shade(pal.cabinet, 0.6))
    _rect(img, cam, 86, 106, 94, 111, (232, 196, 40))  # warning label
    _poly(img, cam, [(90, 106.8), (92.6, 110.3), (87.4, 110.3)], (30, 30, 30))
    _rect(img, cam, sc.OUT_X0 - 1, sc.OUT_TOP + 1.4, 160, sc.OUT_TOP + 6.5, pal.frame_dark)
    _rect(img, cam, sc.OUT_X0 - 1, sc.OUT_TOP, 160, sc.OUT_TOP + 1.5, _shade(pal.belt, 0.9))
    for x in (118.0, 136.0):
        _rect(img, cam, x, sc.OUT_TOP + 6.5, x + 2.0, 99, pal.frame_dark)
    dead = [(sc.END_X + 1.5, sc.BELT_TOP + 0.6), (sc.OUT_X0, sc.OUT_TOP + 0.2)]
    _line(img, cam, dead[0], dead[1], pal.steel, 1.0)


def _product_parts(img: np.ndarray, cam: Camera, pal: Palette, prod: Product) -> None:
    """Plow, glue gun, photo-eye and blank magazine, set for the product's size."""
    top = sc.BELT_TOP - prod.height
    lf = prod.length * 0.96
    a = math.radians(sc.FLAP_OPEN_DEG)
    p0 = (sc.PLOW_X0 - prod.length / 2 + lf * math.cos(a), top - lf * math.sin(a) - 1.0)
    p1 = (sc.PLOW_X1 - prod.length / 2 + lf + 2.0, top - sc.FLAP_THICK - 0.9)
    _line(img, cam, (p0[0] + 3, 18), (p0[0] + 3, p0[1] + 1), pal.steel, 1.0)  # plow hangers
    _line(img, cam, (p1[0] - 4, 18), (p1[0] - 4, p1[1]), pal.steel, 1.0)
    _line(img, cam, p0, p1, _shade(pal.steel, 0.9), 1.6)  # the plow rod
    _line(img, cam, (p0[0] - 3, p0[1] - 2), p0, _shade(pal.steel, 0.9), 1.6)
    g = sc.GLUE_X
    _line(img, cam, (g + 1, 18), (g + 2, top - 15), (30, 30, 34), 1.2)  # hose
    _rect(img, cam, g - 3.0, top - 16, g + 3.0, top - 7, (52, 54, 58))  # gun body
    _rect(img, cam, g - 3.0, top - 12, g + 3.0, top - 10.5, (190, 40, 36))  # heater band
    _poly(
        img,
        cam,
        [(g - 1.2, top - 7), (g + 1.2, top - 7), (g + 0.4, top - 3), (g - 0.4, top - 3)],
        (150, 150, 156),
    )
    eye_y = sc.BELT_TOP - 25.0
    _line(img, cam, (sc.EYE_X + 3, 18), (sc.EYE_X + 3, eye_y), pal.steel, 1.0)
    _rect(img, cam, sc.EYE_X - 2.0, eye_y - 3.0, sc.EYE_X + 3.5, eye_y + 2.0, (40, 42, 46))
    _rect(img, cam, sc.EYE_X - 1.0, eye_y + 2.0, sc.EYE_X + 1.0, eye_y + 2.8, (20, 20, 22))
    _rect(img, cam, -8, 20, 12, 21.5, pal.steel)  # blank magazine
    for k in range(7):
        y = 22.5 + 2.0 * k
        _rect(img, cam, -6, y, 10, y + 1.2, _shade(prod.body, 0.92 - 0.03 * k))
    for x in (-7.0, 11.0):
        _rect(img, cam, x - 0.5, 19, x + 0.5, 40, pal.steel)


def eye_led_center() -> tuple[float, float]:
    """Scene position of the photo-eye's status LED."""
    return (sc.EYE_X + 2.2, sc.BELT_TOP - 26.2)


def _belt(img: np.ndarray, cam: Camera, pal: Palette, phase: float) -> None:
    """Carry and return strands with flights at belt phase ``phase`` (su, mod pitch)."""
    p = sc.PITCH
    _rect(img, cam, -30, sc.BELT_TOP + sc.BELT_THICK, sc.END_X, sc.RETURN_TOP - 1.0, pal.frame)
    _rect(
        img,
        cam,
        -30,
        sc.BELT_TOP + sc.BELT_THICK + 1.2,
        sc.END_X,
        sc.BELT_TOP + 4.2,
        _shade(pal.frame, 1.12),
    )
    for k in range(-3, 14):
        x = -20 + 7 * k
        _circle(img, cam, (x, sc.BELT_TOP + 7.0), 0.45, pal.frame_dark)
    _rect(img, cam, -30, sc.RETURN_TOP, sc.END_X, sc.RETURN_TOP + sc.BELT_THICK, pal.belt)
    _circle(img, cam, (sc.END_X, sc.PULLEY_CY), sc.PULLEY_R + sc.BELT_THICK, pal.belt)
    _circle(img, cam, (sc.END_X, sc.PULLEY_CY), sc.PULLEY_R, _shade(pal.steel, 0.8))
    _circle(img, cam, (sc.END_X, sc.PULLEY_CY), sc.PULLEY_R * 0.35, _shade(pal.steel, 0.55))
    _rect(img, cam, -30, sc.BELT_TOP, sc.END_X, sc.BELT_TOP + sc.BELT_THICK, pal.belt)
    _rect(img, cam, -30, sc.BELT_TOP, sc.END_X, sc.BELT_TOP + 0.5, _shade(pal.belt, 1.3))
    dark = _shade(pal.flight, 0.7)
    for k in range(-3, 13):
        x = phase + k * p - 8.0
        if x < sc.END_X - 1.5:
            _rect(img, cam, x + 3.0, sc.BELT_TOP + 0.6, x + 3.6, sc.BELT_TOP + 2.0, pal.belt_edge)
            _rect(
                img,
                cam,
                x - sc.FLIGHT_W / 2,
                sc.BELT_TOP - sc.FLIGHT_H,
                x + sc.FLIGHT_W / 2,
                sc.BELT_TOP + 0.3,
                pal.flight,
            )
            _rect(
                img,
                cam,
                x + sc.FLIGHT_W / 2 - 0.5,
                sc.BELT_TOP - sc.FLIGHT_H,
                x + sc.FLIGHT_W / 2,
                sc.BELT_TOP + 0.3,
                dark,
            )
        xr = 2 * sc.END_X - x - 5.3
        if xr < sc.END_X - 1.5:
            y0 = sc.RETURN_TOP + sc.BELT_THICK
            _rect(
                img,
                cam,
                xr - sc.FLIGHT_W / 2,
                y0 - 0.3,
                xr + sc.FLIGHT_W / 2,
                y0 + 3.2,
                _shade(pal.flight, 0.8),
            )


def _housing(img: np.ndarray, cam: Camera, pal: Palette, alpha: np.ndarray | None) -> None:
    """The feeder housing at the left (in front of the belt); draws into ``alpha`` too."""
    x1 = sc.FEEDER_X1
    parts = [
        ((-30, 44, x1, 99), _shade(pal.frame, 0.95)),
        ((x1 - 1.2, 44, x1, 99), pal.frame_dark),
        ((-30, 44, x1, 45.2), _shade(pal.frame, 1.15)),
        ((1.0, 56, 12.5, 73), (26, 27, 30)),
    ]
    for (x0, y0, xa, ya), col in parts:
        _rect(img, cam, x0, y0, xa, ya, col)
        if alpha is not None:
            _rect(alpha, cam, x0, y0, xa, ya, (255, 255, 255))
    for y in (48.0, 95.0):
        for x in (2.0, 12.0):
            _circle(img, cam, (x, y), 0.6, pal.frame_dark)


def feeder_pivot() -> tuple[float, float]:
    """Scene position of the rotary feeder's pivot (inside the housing window)."""
    return (6.5, 64.5)


def _reduce(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


class Backdrop:
    """Supersampled static layers for one product: belt-phase bank, foreground and its mask."""

    def __init__(
        self, width: int, height: int, cam: Camera, pal: Palette, prod: Product, phases: int
    ) -> None:
        ss = 4 if max(width, height) <= 256 else 2
        big = cam.scaled(ss)
        size = (width, height)
        base = np.zeros((height * ss, width * ss, 3), np.uint8)
        _wall(base, big, pal)
        _cabinet(base, big, pal)
        _product_parts(base, big, pal, prod)
        bank = np.empty((phases, height, width, 3), np.uint8)
        for i in range(phases):
            img = base.copy()
            _belt(img, big, pal, sc.PITCH * i / phases)
            bank[i] = _reduce(img, size)
        fg = np.zeros_like(base)
        alpha = np.zeros_like(base)
        _housing(fg, big, pal, alpha)
        fg_small = _reduce(fg, size)
        a_small = _reduce(alpha, size)[:, :, 0]
        cols = np.nonzero(a_small.max(axis=0) > 0)[0]
        rows = np.nonzero(a_small.max(axis=1) > 0)[0]
        if len(cols) and len(rows):
            self.fg_box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        else:
            self.fg_box = (0, 0, 0, 0)
        r0, r1, c0, c1 = self.fg_box
        a = a_small[r0:r1, c0:c1].astype(np.float32) / 255.0
        self.fg = fg_small[r0:r1, c0:c1].astype(np.float32)
        self.fg_w = np.ascontiguousarray(a)
        self.bg_w = np.ascontiguousarray(1.0 - a)
        self.fg_u8 = np.ascontiguousarray(fg_small[r0:r1, c0:c1])
        self.bank = bank
        self.phases = phases
