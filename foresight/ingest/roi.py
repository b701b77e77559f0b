"""Automatic region of interest: the part of the picture where the line moves.

A plant camera sees far more than the conveyor (walls, guards, the floor). Cropping to where the
product moves gives the model several times more pixels on the cartons at the same cost, which
is what makes a flap a few pixels high visible. The region is found from normal footage only:

1. frame pairs are sampled across the recordings (consecutive source frames, spread in time);
2. the activity of each pixel is a high percentile (``ACTIVITY_Q``) of its absolute grey change,
   so the conveyor, which moves nearly all the time, stands out, while a hand or a shadow that
   passes now and then does not;
3. rows and columns whose mean activity rises clearly above the picture's background
   (``LEVEL`` of the way from the median to the peak) bound the moving band, which is then
   padded (``PAD``: a flap rises above the cartons, a carton can ride high) and kept at least
   ``MIN_SIDE`` of the frame on each side;
4. when nothing moves clearly, or the band already fills most of the picture, there is no crop.

The result is one fixed ROI (x, y, width, height in source pixels) for the whole dataset: it is
written into the ingest manifest and the model card, and replay and the monitor apply it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from foresight.errors import InputError
from foresight.ingest.video import open_video

log = logging.getLogger(__name__)

ACTIVITY_Q = 90.0  #: percentile of per-pixel change over the sampled frame pairs
LEVEL = 0.25  #: a row/column is active above median + LEVEL * (peak - median)
MIN_CONTRAST = 2.0  #: grey levels of activity peak over background below which nothing moves
PAD = 0.3  #: padding, as a fraction of the active band's size, on each side
MIN_SIDE = 0.25  #: the ROI keeps at least this fraction of the frame on each axis
MAX_AREA = 0.8  #: no crop when the ROI would keep more than this share of the picture
MAX_VIDEOS = 8
PAIRS_PER_VIDEO = 24
WORK_WIDTH = 256  #: activity is measured on frames downscaled to at most this width


def _pairs(path: Path, count: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """|grey(t+1) - grey(t)| of ``count`` consecutive-frame pairs spread over ``path``, and the
    source size (width, height)."""
    cap, info = open_video(path)
    out: list[np.ndarray] = []
    try:
        total = info.container_frames or 0
        if total < 2:
            return out, (info.width, info.height)
        scale = min(1.0, WORK_WIDTH / max(1, info.width))
        for start in np.linspace(0, total - 2, count).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(start))
            ok_a, a = cap.read()
            ok_b, b = cap.read()
            if not (ok_a and ok_b):
                continue
            ga, gb = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (a, b))
            if scale < 1.0:
                size = (round(info.width * scale), round(info.height * scale))
                ga, gb = (cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in (ga, gb))
            out.append(np.abs(gb.astype(np.float32) - ga.astype(np.float32)))
    finally:
        cap.release()
    return out, (info.width, info.height)


def _band(profile: np.ndarray) -> tuple[int, int] | None:
    """[lo, hi) of the active band of a 1-D activity profile, or None if nothing stands out."""
    base, peak = float(np.median(profile)), float(profile.max())
    if peak - base < MIN_CONTRAST:
        return None
    active = np.flatnonzero(profile > base + LEVEL * (peak - base))
    return int(active[0]), int(active[-1]) + 1


def _pad(band: tuple[int, int] | None, n: int) -> tuple[int, int]:
    if band is None:
        return 0, n
    lo, hi = band
    pad = PAD * (hi - lo)
    lo, hi = max(0, int(lo - pad)), min(n, int(np.ceil(hi + pad)))
    short = int(np.ceil(MIN_SIDE * n)) - (hi - lo)
    if short > 0:  # grow evenly, shifting inwards at the frame edges
        lo = max(0, lo - short // 2 - short % 2)
        hi = min(n, lo + max(hi - lo, int(np.ceil(MIN_SIDE * n))))
        lo = max(0, hi - int(np.ceil(MIN_SIDE * n)))
    return lo, hi


def activity_roi(activity: np.ndarray) -> tuple[int, int, int, int] | None:
    """ROI (x, y, w, h) in the pixels of ``activity`` (H, W), or None for the whole frame."""
    h, w = activity.shape
    rows, cols = _band(activity.mean(1)), _band(activity.mean(0))
    if rows is None and cols is None:
        return None
    y0, y1 = _pad(rows, h)
    x0, x1 = _pad(cols, w)
    if (y1 - y0) * (x1 - x0) > MAX_AREA * h * w:
        return None
    return x0, y0, x1 - x0, y1 - y0


def auto_roi(videos: list[Path]) -> tuple[int, int, int, int] | None:
    """The moving band of the line in source pixels, from normal ``videos``; None: no crop."""
    diffs: list[np.ndarray] = []
    shapes = set()
    for path in videos[:: max(1, len(videos) // MAX_VIDEOS)][:MAX_VIDEOS]:
        try:
            pairs, size = _pairs(path, PAIRS_PER_VIDEO)
        except InputError:
            continue  # ingest reports the unusable file itself
        if pairs:
            shapes.add(size)
            diffs.extend(pairs)
    if not diffs or len(shapes) != 1:
        if len(shapes) > 1:
            log.info("automatic ROI: the recordings differ in size; no crop")
        return None
    width, height = shapes.pop()
    activity = np.percentile(np.stack(diffs), ACTIVITY_Q, axis=0)
    roi = activity_roi(cv2.blur(activity, (3, 3)))
    if roi is None:
        return None
    sx, sy = width / activity.shape[1], height / activity.shape[0]
    x, y, w, h = roi
    x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
    x1, y1 = min(width, int(np.ceil((x + w) * sx))), min(height, int(np.ceil((y + h) * sy)))
    return x0, y0, x1 - x0, y1 - y0


def manifest_roi(shards: Path) -> tuple[int, int, int, int] | None | str:
    """The ROI the shards at ``shards`` were cut with (``"unknown"`` before any source)."""
    import json

    man = shards / "manifest.json" if shards.is_dir() else shards
    if not man.is_file():
        return "unknown"
    sources = json.loads(man.read_text()).get("sources", [])
    if not sources:
        return "unknown"
    roi = sources[0].get("roi")
    return tuple(int(v) for v in roi) if roi else None
