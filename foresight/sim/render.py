"""Per-frame renderer: belt-phase background, cartons, moving parts, nuisances, light and noise.

The hot path is numpy slicing plus a few ``cv2.fillConvexPoly`` calls per carton; everything
that does not move is precomputed by :mod:`foresight.sim.backdrop`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import cv2
import numpy as np

from foresight.sim import backdrop as bd
from foresight.sim import scene as sc
from foresight.sim.scene import Appearance, Camera

AA = cv2.LINE_AA
PHASES = 32  #: belt phases per flight pitch in the background bank
NOISE_BANK = 16


class CartonPose(NamedTuple):
    """Where and how to draw one carton (scene units, degrees)."""

    product: int
    x: float  #: centre x
    y: float  #: bottom y (y down)
    angle: float  #: counter-clockwise tilt
    pivot: float  #: carton-local x of the tilt pivot (on the bottom edge)
    flap: float  #: top-flap angle above horizontal


class Nuisance(NamedTuple):
    """A harmless disturbance in the picture: a hand or a passing shadow."""

    kind: str  #: "hand" or "shadow"
    x: float  #: scene x of its centre
    y: float  #: scene y of its centre (hand: fingertip)
    strength: float  #: shadow depth 0..1 or hand sprite index


class View(NamedTuple):
    """Everything that changes from frame to frame; the renderer draws exactly this."""

    product_set: int  #: index of the product whose machine settings are in the background
    belt_phase: float  #: su, position of the belt modulo anything
    pulley_angle: float  #: radians
    feeder_angle: float  #: radians
    eye_blocked: bool
    cartons: tuple[CartonPose, ...]
    nuisances: tuple[Nuisance, ...]
    gain: tuple[float, float, float]  #: per-channel light gain (flicker, lighting drift)
    noise_index: int
    noise_row: int


def _hand_sprite(scale: float, glove: tuple[int, int, int], mirrored: bool) -> np.ndarray:
    """Premultiplied RGBA float32 sprite of a forearm and gloved hand, fingertips at the bottom."""
    ss = 4
    cam = Camera(scale * ss, 0.0, scale * ss, 0.0)
    w_su, h_su = 22.0, 44.0
    w, h = max(2, int(w_su * scale * ss)), max(2, int(h_su * scale * ss))
    rgb = np.zeros((h, w, 3), np.uint8)
    a = np.zeros((h, w, 3), np.uint8)
    sleeve = (58, 62, 70)
    shapes = [
        ("rect", (5.0, 0.0, 16.5, 24.0), sleeve),
        ("ellipse", (10.5, 30.0, 6.0, 7.0), glove),
        ("rect", (6.0, 30.0, 8.0, 42.0), glove),
        ("rect", (8.8, 31.0, 10.8, 43.5), glove),
        ("rect", (11.6, 31.0, 13.6, 43.0), glove),
        ("rect", (14.2, 30.0, 16.0, 40.5), glove),
        ("ellipse", (17.0, 27.5, 1.6, 5.0), glove),
    ]
    for kind, g, col in shapes:
        for img, c in ((rgb, col), (a, (255, 255, 255))):
            if kind == "rect":
                pts = np.array([(g[0], g[1]), (g[2], g[1]), (g[2], g[3]), (g[0], g[3])])
                cv2.fillConvexPoly(img, cam.px(pts), c, AA, 4)
            else:
                ctr = (int(g[0] * cam.ax * 16), int(g[1] * cam.ay * 16))
                ax = (int(g[2] * cam.ax * 16), int(g[3] * cam.ay * 16))
                cv2.ellipse(img, ctr, ax, 0, 0, 360, c, -1, AA, 4)
    small = (int(round(w / ss)), int(round(h / ss)))
    rgb_s = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    a_s = cv2.resize(a, small, interpolation=cv2.INTER_AREA)[:, :, :1].astype(np.float32) / 255
    rgb_s *= np.linspace(1.08, 0.85, small[0], dtype=np.float32)[None, :, None]
    out = np.concatenate([rgb_s, a_s], axis=2)
    return out[:, ::-1].copy() if mirrored else out


def _soft_ellipse(rx: int, ry: int) -> np.ndarray:
    """A float32 mask in [0, 1], 1 in the middle, fading to 0 at the ellipse border."""
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1].astype(np.float32)
    r = np.sqrt((xx / max(rx, 1)) ** 2 + (yy / max(ry, 1)) ** 2)
    return np.clip(1.6 * (1.0 - r), 0.0, 1.0) ** 1.5


def _carton_tables(look: Appearance) -> tuple[np.ndarray, list[list[tuple[int, int, tuple]]]]:
    """Carton-local vertices of every product padded to 16, and per-product draw spans."""
    static = np.zeros((len(look.products), 16, 2), np.float64)
    spans = []
    for i, p in enumerate(look.products):
        verts, sp = p.local_polys()
        static[i, : len(verts)] = verts
        spans.append(list(sp) + [(16, 20, p.flap)])
    return static, spans


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=8)
def noise_bank(width: int, height: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Shared bank of camera-noise fields (positive and negative parts, uint8), 2H rows each.

    Every frame adds a random field at a random row offset; which one is drawn from the line's own
    seeded stream, so lines share the bank but not the noise sequence.
    """
    rng = np.random.default_rng(np.random.SeedSequence([width, height, 0x0153]))
    n = max(2, min(NOISE_BANK, (NOISE_BANK * 128 * 128) // (width * height)))
    pos = np.empty((n, 2 * height, width, 3), np.uint8)
    neg = np.empty((n, 2 * height, width, 3), np.uint8)
    for i in range(n):
        z = np.clip(np.rint(rng.standard_normal((2 * height, width, 3)) * sigma), -255, 255)
        pos[i] = np.maximum(z, 0).astype(np.uint8)
        neg[i] = np.maximum(-z, 0).astype(np.uint8)
    return _frozen(pos), _frozen(neg)


@functools.lru_cache(maxsize=32)
def backdrop_for(width: int, height: int, look: Appearance, product: int) -> bd.Backdrop:
    """Static layers of line ``look`` set up for ``product`` (cached across simulated lines)."""
    cam = Camera.make(width, height, look.zoom, look.dx, look.dy)
    b = bd.Backdrop(width, height, cam, look.palette, look.products[product], PHASES)
    _frozen(b.bank)
    return b


class _Overlays(NamedTuple):
    vignette: np.ndarray
    glare: np.ndarray
    hands: tuple[np.ndarray, np.ndarray]
    shadow: np.ndarray


@functools.lru_cache(maxsize=16)
def _overlays(width: int, height: int, look: Appearance) -> _Overlays:
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vig = 255.0 * (1.0 - look.vignette * 0.5 * r2)
    vignette = np.repeat(np.clip(vig, 0, 255)[:, :, None], 3, axis=2).astype(np.uint8)
    band = np.exp(-((((xx * 0.6 - yy * 0.9) - 0.1 * w) / (0.12 * w)) ** 2))
    glare = look.glare * band * (yy < 0.35 * h)
    glare = np.repeat(glare[:, :, None], 3, axis=2).astype(np.uint8)
    s = Camera.make(width, height, look.zoom, look.dx, look.dy).scale
    hands = tuple(_frozen(_hand_sprite(s, look.palette.glove, m)) for m in (False, True))
    shadow = _soft_ellipse(max(2, int(30 * s)), max(2, int(48 * s)))
    return _Overlays(_frozen(vignette), _frozen(glare), hands, _frozen(shadow))  # type: ignore[arg-type]


class Renderer:
    """Draws :class:`View` records into RGB uint8 frames for one line variant."""

    def __init__(self, width: int, height: int, look: Appearance, noise_sigma: float) -> None:
        self.width, self.height = width, height
        self.look = look
        self.cam = Camera.make(width, height, look.zoom, look.dx, look.dy)
        self._a16 = self.cam.ax * 16.0
        self._bx16 = self.cam.bx * 16.0 - 8.0
        self._by16 = self.cam.by * 16.0 - 8.0
        self._static, self._spans = _carton_tables(look)
        self._sizes = np.array([(p.length, p.height) for p in look.products], np.float64)
        ov = _overlays(width, height, look)
        self._vignette, self._glare, self._hands, self._shadow = ov
        self._glare_on = bool(self._glare.max() > 0)
        self._noise_on = noise_sigma > 0
        self._noise_pos, self._noise_neg = noise_bank(width, height, float(noise_sigma))
        self.noise_bank_size = len(self._noise_pos)
        self._backdrops: dict[int, bd.Backdrop] = {}

    def backdrop(self, product: int) -> bd.Backdrop:
        """Static layers with the machine set up for ``product`` (built on first use)."""
        b = self._backdrops.get(product)
        if b is None:
            b = self._backdrops[product] = backdrop_for(self.width, self.height, self.look, product)
        return b

    def _cartons(self, img: np.ndarray, poses: tuple[CartonPose, ...]) -> None:
        """Draw all cartons; their vertices are transformed in one vectorised pass."""
        if not poses:
            return
        arr = np.array(poses, np.float64)
        prod = arr[:, 0].astype(np.intp)
        length, height = self._sizes[prod, 0], self._sizes[prod, 1]
        a = np.radians(arr[:, 5])
        ca, sa = np.cos(a), np.sin(a)
        hx = -length / 2
        lf = length * 0.96
        tx, ty = hx + lf * ca, height + lf * sa
        nx, ny = -sa * sc.FLAP_THICK, ca * sc.FLAP_THICK
        flap = np.stack(
            [
                np.stack([hx, tx, tx + nx, hx + nx], 1),
                np.stack([height, ty, ty + ny, height + ny], 1),
            ],
            axis=2,
        )
        local = np.concatenate((self._static[prod], flap), axis=1)
        piv = arr[:, 4:5]
        r = np.radians(arr[:, 3])
        c, s = np.cos(r)[:, None], np.sin(r)[:, None]
        lx = local[:, :, 0] - piv
        ly = local[:, :, 1]
        k = self._a16
        pts = np.empty(local.shape, np.float64)
        pts[:, :, 0] = (lx * c - ly * s + piv) * k + (arr[:, 1:2] * k + self._bx16)
        pts[:, :, 1] = (lx * s + ly * c) * -k + (arr[:, 2:3] * k + self._by16)
        ipts = pts.astype(np.int32)
        fill = cv2.fillConvexPoly
        for i, p in enumerate(prod.tolist()):
            q = ipts[i]
            for s0, e0, col in self._spans[p]:
                fill(img, q[s0:e0], col, AA, 4)

    def _moving_parts(self, img: np.ndarray, view: View) -> None:
        a16, bx, by = self._a16, self._bx16, self._by16
        cx, cy = sc.END_X, sc.PULLEY_CY
        r = sc.PULLEY_R * 0.9
        segs = []
        for k in range(3):
            ang = view.pulley_angle + k * 2.0944
            p = (cx * a16 + bx, cy * a16 + by)
            q = ((cx + r * math.cos(ang)) * a16 + bx, (cy + r * math.sin(ang)) * a16 + by)
            segs.append(np.array([p, q], np.int32))
        lw = max(1, int(round(0.5 * self.cam.scale)))
        cv2.polylines(img, segs, False, (92, 94, 98), lw, AA, 4)
        lx, ly = bd.eye_led_center()
        col = (255, 150, 40) if view.eye_blocked else (70, 52, 40)
        rr = max(8, int(0.7 * a16))
        cv2.circle(img, (int(lx * a16 + bx), int(ly * a16 + by)), rr, col, -1, AA, 4)

    def _feeder_arm(self, img: np.ndarray, angle: float) -> None:
        a16, bx, by = self._a16, self._bx16, self._by16
        px, py = bd.feeder_pivot()
        c, s = math.cos(angle), math.sin(angle)
        tip = (px + 5.0 * c, py + 5.0 * s)
        cup = ((tip[0] - 1.5 * s, tip[1] + 1.5 * c), (tip[0] + 1.5 * s, tip[1] - 1.5 * c))
        arm = np.array([(px, py), tip], np.float64)
        bar = np.array(cup, np.float64)
        segs = [
            (arm * a16 + (bx, by)).astype(np.int32),
            (bar * a16 + (bx, by)).astype(np.int32),
        ]
        lw = max(1, int(round(0.9 * self.cam.scale)))
        cv2.polylines(img, segs, False, (150, 152, 150), lw, AA, 4)

    def _foreground(self, img: np.ndarray, b: bd.Backdrop) -> None:
        r0, r1, c0, c1 = b.fg_box
        if r1 <= r0:
            return
        roi = img[r0:r1, c0:c1]
        roi[:] = (roi * b.bg_w[:, :, None] + b.fg).astype(np.uint8)

    def _nuisance(self, img: np.ndarray, n: Nuisance) -> None:
        a16 = self._a16 / 16.0
        cx = int(round(n.x * a16 + self._bx16 / 16.0))
        cy = int(round(n.y * a16 + self._by16 / 16.0))
        if n.kind == "hand":
            spr = self._hands[int(n.strength) % 2]
            h, w = spr.shape[:2]
            x0, y0 = cx - w // 2, cy - h
        else:
            spr = self._shadow
            h, w = spr.shape
            x0, y0 = cx - w // 2, cy - h // 2
        xa, ya = max(0, x0), max(0, y0)
        xb, yb = min(self.width, x0 + w), min(self.height, y0 + h)
        if xb <= xa or yb <= ya:
            return
        roi = img[ya:yb, xa:xb]
        part = spr[ya - y0 : yb - y0, xa - x0 : xb - x0]
        if n.kind == "hand":
            alpha = part[:, :, 3:4]  # the colour channels are premultiplied by alpha
            roi[:] = np.minimum(roi * (1.0 - alpha) + part[:, :, :3], 255.0).astype(np.uint8)
        else:
            roi[:] = (roi * (1.0 - n.strength * part)[:, :, None]).astype(np.uint8)

    def render(self, view: View, *, noise: bool = True) -> np.ndarray:
        """The RGB frame for ``view``; ``noise=False`` gives the same frame without sensor noise."""
        b = self.backdrop(view.product_set)
        idx = int((view.belt_phase % sc.PITCH) / sc.PITCH * PHASES + 0.5) % PHASES
        img = b.bank[idx].copy()
        self._moving_parts(img, view)
        self._cartons(img, view.cartons)
        self._foreground(img, b)
        self._feeder_arm(img, view.feeder_angle)
        for n in view.nuisances:
            self._nuisance(img, n)
        cv2.multiply(img, self._vignette, dst=img, scale=1.0 / 255.0)
        g = view.gain
        m = np.array([[g[0], 0, 0, 0], [0, g[1], 0, 0], [0, 0, g[2], 0]], np.float32)
        img = cv2.transform(img, m)
        if self._glare_on:
            cv2.add(img, self._glare, dst=img)
        if noise and self._noise_on:
            i, r = view.noise_index % self.noise_bank_size, view.noise_row % self.height
            cv2.add(img, self._noise_pos[i, r : r + self.height], dst=img)
            cv2.subtract(img, self._noise_neg[i, r : r + self.height], dst=img)
        return img
