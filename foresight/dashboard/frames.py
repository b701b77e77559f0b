"""File contracts between the monitor and the dashboard for pictures: the latest frame and
evidence clips. The monitor writes, the dashboard only reads; both sides use these helpers.

- **Latest frame**: ``<live dir>/latest.npz`` with ``frame`` (H, W, 3 uint8 RGB), ``predicted``
  (the model's frame for now, same shape), ``heatmap`` (G, G float32, robust sigmas per region)
  and ``meta`` (a JSON string: ``time`` unix seconds, ``model``, ``horizon_s``, ``score``,
  ``state``, ...). Rewritten atomically (temporary file, then ``os.replace``), so a reader never
  sees half a file. Once or twice a second is plenty; it must not run on the PLC path.
- **Evidence clips**: ``<clips dir>/<t_ns>.webm`` (VP8), ``t_ns`` the alarm start in unix
  nanoseconds, a few seconds before and after the alarm. Written beside the target and renamed
  into place. The dashboard matches a clip to an alarm within ``CLIP_TOLERANCE_S``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

LATEST = "latest.npz"
CLIP_TOLERANCE_S = 5.0


class LatestFrame(NamedTuple):
    """What the monitor last published: frame, predicted frame, heatmap and metadata."""

    frame: np.ndarray
    predicted: np.ndarray
    heatmap: np.ndarray
    meta: dict[str, Any]


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """An image as (H, W, 3) uint8: grey is repeated, floats in [0, 1] are scaled."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0, 0, 255).round().astype(np.uint8)
    return a


def publish_latest(
    directory: str | os.PathLike[str],
    frame: np.ndarray,
    predicted: np.ndarray,
    heatmap: np.ndarray,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``latest.npz`` into ``directory`` (created); returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    f, p = to_rgb8(frame), to_rgb8(predicted)
    if f.shape != p.shape:
        raise ValueError(f"frame {f.shape} and predicted {p.shape} differ in shape")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (G, G), got {heat.shape}")
    doc = json.dumps(dict(meta or {}), default=_plain)
    tmp = d / f".{LATEST}.{os.getpid()}.tmp"
    with tmp.open("wb") as fh:
        np.savez(fh, frame=f, predicted=p, heatmap=heat, meta=np.array(doc))
    os.replace(tmp, d / LATEST)
    return d / LATEST


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def read_latest(directory: str | os.PathLike[str]) -> LatestFrame | None:
    """The published frame set, or None when nothing (readable) has been published yet."""
    path = Path(directory) / LATEST
    try:
        with np.load(path, allow_pickle=False) as z:
            return LatestFrame(z["frame"], z["predicted"], z["heatmap"], json.loads(str(z["meta"])))
    except (OSError, KeyError, ValueError):
        return None


def write_evidence_clip(
    directory: str | os.PathLike[str],
    t_ns: int,
    frames: Sequence[np.ndarray],
    fps: float,
    min_side: int = 240,
) -> Path:
    """Write ``frames`` (RGB) as ``<t_ns>.webm`` (VP8) in ``directory``; returns the path.

    Small model frames are enlarged (nearest neighbour) to at least ``min_side`` pixels so the
    clip is watchable; run it off the PLC path (it encodes).
    """
    import cv2

    if not frames:
        raise ValueError("an evidence clip needs at least one frame")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    first = to_rgb8(frames[0])
    scale = max(1, math.ceil(min_side / min(first.shape[:2])))
    h, w = first.shape[0] * scale, first.shape[1] * scale
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{int(t_ns)}.partial.webm"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"VP80"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"{tmp}: OpenCV cannot write VP8 WebM here")
    try:
        for img in frames:
            rgb = to_rgb8(img)
            if rgb.shape[:2] != first.shape[:2]:
                raise ValueError(f"clip frames differ in size: {rgb.shape} vs {first.shape}")
            big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
            writer.write(np.ascontiguousarray(big[..., ::-1]))
    finally:
        writer.release()
    out = d / f"{int(t_ns)}.webm"
    os.replace(tmp, out)
    return out


def clip_for(
    directory: str | os.PathLike[str], t_ns: int, tolerance_s: float = CLIP_TOLERANCE_S
) -> Path | None:
    """The evidence clip named nearest to ``t_ns`` within ``tolerance_s``, or None."""
    d = Path(directory)
    if not d.is_dir():
        return None
    best, best_dt = None, tolerance_s * 1e9
    for p in d.glob("*.webm"):
        if not p.stem.isdigit():
            continue
        dt = abs(int(p.stem) - int(t_ns))
        if dt <= best_dt:
            best, best_dt = p, dt
    return best
