"""Footage the monitor keeps: a rolling archive of normal footage, evidence clips, the live frame.

All of it stays on this machine (nothing here opens a socket). The monitor hands every model
step to :class:`FootageKeeper` through a bounded queue (full: the newest step is dropped and
counted) and the keeper does its encoding in its own thread, off the PLC path.

- **Rolling archive** (``archive_dir``, default ``archive/`` beside the health file) for
  ``foresight retrain``: the camera's frames as captured (before the model's crop and resize, so a
  retrain may change them), at the model's rate, in segments of ``segment_s`` seconds:
  ``<start_ns>.mp4`` (mp4v) with ``<start_ns>.csv`` (``t`` then the model's sensor channels, as
  ``ingest`` reads them) and ``<start_ns>.json`` (``start_ns``, ``fps``, ``frames``, ``model``).
  A segment holds consecutive model steps only: when the model skipped ticks (it fell behind) the
  segment ends there, since a gap would make the footage look faster than the line ran; segments
  under ``MIN_SEGMENT_S`` are not kept.
  Only *normal* footage goes in: a segment is written while the step is calm
  (``StepOutput.calm``: the line runs, no slow-down is up, camera and sensors work; watch,
  hands and shadows, and a model that no longer fits the picture are normal footage: a drifted
  line scores higher, and the retrain that follows a drift needs exactly that footage); anything
  else ends it. Footage
  leading up to an alarm or a stop is a possible precursor (a jam the model missed looks normal
  until the stop), so a segment is finalised only once ``guard_s`` seconds of normal footage have
  followed it; an alarm, a health fault or a stop within that guard deletes it instead (all stops
  count: the keeper cannot tell a jam from a planned stop). Segments are written under
  ``.partial/`` (ignored by ingest) and renamed into place, so a retrain never reads half a file.
  Retention: the oldest segments go once the archive is older than ``archive_hours`` or larger
  than ``archive_gb``.
- **Evidence clips** (the dashboard's ``clips_dir``): ``clip_before_s`` seconds before every alarm
  onset and ``clip_after_s`` after it, as ``<alarm ns>.webm`` (VP8; a browser plays it), frames at
  most ``clip_side`` pixels on their long side. Kept for ``clip_days`` days.
- **Live frame** (the dashboard's ``live_dir``): every ``publish_s`` seconds the model's frame, the
  frame it expected for this instant and the residual heatmap (``foresight.dashboard.frames``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from foresight.dashboard.frames import publish_latest, write_evidence_clip
from foresight.monitor.config import FootageConfig

log = logging.getLogger(__name__)

PARTIAL = ".partial"
GAP_PERIODS = 1.5  #: a step this many model periods after the last one ends the segment
MIN_SEGMENT_S = 5.0  #: shorter segments (cut by a gap) are not kept: too short to train on


@dataclass
class Kept:
    """One model step as the keeper sees it."""

    wall_ns: int  # wall clock of the step
    t: float  # source seconds
    raw: np.ndarray | None  # camera frame as captured, BGR (None: not available)
    frame: np.ndarray  # the model's frame, RGB
    sensors: np.ndarray  # (S,) raw sensors
    normal: bool  # a calm step (``StepOutput.calm``): archive-worthy
    alarm_onset: bool
    expected: np.ndarray | None = None  # the model's frame for this instant (float, [0, 1])
    heatmap: np.ndarray | None = None
    meta: dict[str, Any] | None = None


class _Segment:
    """An archive segment being written under ``.partial/``."""

    def __init__(self, folder: Path, start_ns: int, fps: float, channels: tuple[str, ...]):
        self.folder, self.start_ns, self.fps = folder, start_ns, fps
        folder.mkdir(parents=True, exist_ok=True)
        self.video = folder / f"{start_ns}.mp4"
        self.csv = folder / f"{start_ns}.csv"
        self.writer: cv2.VideoWriter | None = None
        self.fh = self.csv.open("w", newline="")
        self.rows = csv.writer(self.fh)
        self.rows.writerow(["t", *channels])
        self.frames = 0
        self.end_t = 0.0

    def add(self, k: Kept) -> None:
        img = k.raw if k.raw is not None else cv2.cvtColor(k.frame, cv2.COLOR_RGB2BGR)
        if self.writer is None:
            h, w = img.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.video), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.video}: OpenCV cannot write mp4v here")
        self.writer.write(np.ascontiguousarray(img))
        t = self.frames / self.fps
        self.rows.writerow([f"{t:.4f}", *(f"{v:.6g}" for v in np.asarray(k.sensors, float))])
        self.frames += 1
        self.end_t = k.t

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if not self.fh.closed:
            self.fh.close()

    def discard(self) -> None:
        self.close()
        for f in (self.video, self.csv):
            f.unlink(missing_ok=True)

    def publish(self, into: Path, model: str) -> Path:
        """Move the finished segment into ``into`` (sidecar JSON last: it marks it complete)."""
        self.close()
        side = {"start_ns": self.start_ns, "fps": self.fps, "frames": self.frames, "model": model}
        os.replace(self.csv, into / self.csv.name)
        os.replace(self.video, into / self.video.name)
        tmp = self.folder / f"{self.start_ns}.json"
        tmp.write_text(json.dumps(side) + "\n")
        os.replace(tmp, into / tmp.name)
        return into / self.video.name


class FootageKeeper:
    """Archive, evidence clips and live frame from the monitor's steps (one thread calls it)."""

    def __init__(
        self,
        cfg: FootageConfig,
        archive_dir: Path,
        clips_dir: Path,
        live_dir: Path,
        fps: float,
        channels: tuple[str, ...],
        model: str = "",
    ):
        self.cfg, self.fps, self.channels, self.model = cfg, fps, tuple(channels), model
        self.archive_dir, self.clips_dir, self.live_dir = archive_dir, clips_dir, live_dir
        self.partial = archive_dir / PARTIAL
        if cfg.archive:
            archive_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.partial, ignore_errors=True)  # a crash's leftovers: never complete
        self.seg: _Segment | None = None
        self.waiting: list[_Segment] = []  # finished, inside their guard
        self.ring: deque[np.ndarray] = deque(maxlen=max(1, round(cfg.clip_before_s * fps)))
        self.clip: tuple[int, list[np.ndarray], int] | None = None  # (t_ns, frames, still to add)
        self.counts = {"segments": 0, "discarded": 0, "clips": 0, "pruned": 0}

    # -- per step ---------------------------------------------------------------------------
    def add(self, k: Kept) -> None:
        """Take one step (call in order, from one thread)."""
        if self.cfg.archive:
            self._archive(k)
        if self.cfg.clips:
            self._clip(k)
        if k.expected is not None and k.heatmap is not None:
            publish_latest(self.live_dir, k.frame, k.expected, k.heatmap, k.meta)

    def close(self) -> None:
        """End of the run: a segment still inside its guard is not known to be normal: deleted."""
        if self.clip is not None:
            self._write_clip()
        self._discard_all()

    def _discard_all(self) -> None:
        """Delete the segment being written and those inside their guard."""
        for s in [*self.waiting, *([self.seg] if self.seg else [])]:
            s.discard()
            self.counts["discarded"] += 1
        self.waiting, self.seg = [], None

    # -- archive ----------------------------------------------------------------------------
    def _archive(self, k: Kept) -> None:
        if not k.normal:
            self._discard_all()
            return
        if self.seg is not None and k.t - self.seg.end_t > GAP_PERIODS / self.fps:
            self._finish()  # the model skipped ticks: a gap would speed the footage up
        if self.seg is None:
            self.seg = _Segment(self.partial, k.wall_ns, self.fps, self.channels)
        self.seg.add(k)
        if self.seg.frames >= round(self.cfg.segment_s * self.fps):
            self._finish()
        while self.waiting and k.t - self.waiting[0].end_t >= self.cfg.guard_s:
            s = self.waiting.pop(0)
            s.publish(self.archive_dir, self.model)
            self.counts["segments"] += 1
            self._prune(k.wall_ns)

    def _finish(self) -> None:
        """End the current segment: it waits out its guard, or goes when too short to train on."""
        seg, self.seg = self.seg, None
        seg.close()
        if seg.frames >= MIN_SEGMENT_S * self.fps:
            self.waiting.append(seg)
        else:
            seg.discard()
            self.counts["discarded"] += 1

    def _prune(self, now_ns: int) -> None:
        """Drop the oldest segments past the age or size bound."""
        segs = sorted(
            (p for p in self.archive_dir.glob("*.json") if p.stem.isdigit()),
            key=lambda p: int(p.stem),
        )
        sizes = {p: sum(f.stat().st_size for f in _files(p)) for p in segs}
        total = sum(sizes.values())
        oldest_ok = now_ns - int(self.cfg.archive_hours * 3600e9)
        for p in segs:
            if int(p.stem) >= oldest_ok and total <= self.cfg.archive_gb * 1e9:
                break
            total -= sizes[p]
            for f in _files(p):
                f.unlink(missing_ok=True)
            self.counts["pruned"] += 1

    # -- evidence clips ---------------------------------------------------------------------
    def _clip(self, k: Kept) -> None:
        img = k.raw if k.raw is not None else cv2.cvtColor(k.frame, cv2.COLOR_RGB2BGR)
        small = _fit(img, self.cfg.clip_side)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        if self.clip is not None:
            t_ns, frames, left = self.clip
            frames.append(rgb)
            self.clip = (t_ns, frames, left - 1)
            if left - 1 <= 0:
                self._write_clip()
        elif k.alarm_onset:
            after = round(self.cfg.clip_after_s * self.fps)
            self.clip = (k.wall_ns, [*self.ring, rgb], after)
            if after <= 0:
                self._write_clip()
        self.ring.append(rgb)

    def _write_clip(self) -> None:
        t_ns, frames, _ = self.clip
        self.clip = None
        sizes = {f.shape for f in frames}
        if len(sizes) > 1:  # the camera changed resolution mid-clip: keep the newest size
            frames = [f for f in frames if f.shape == frames[-1].shape]
        try:
            write_evidence_clip(self.clips_dir, t_ns, frames, self.fps)
            self.counts["clips"] += 1
        except (OSError, ValueError) as e:
            log.error("evidence clip %d not written: %s", t_ns, e)
        cutoff = time.time_ns() - int(self.cfg.clip_days * 86400e9)
        for p in self.clips_dir.glob("*.webm"):
            if p.stem.isdigit() and int(p.stem) < cutoff:
                p.unlink(missing_ok=True)


def _files(side: Path) -> list[Path]:
    """A segment's files, from its sidecar JSON."""
    return [side.with_suffix(s) for s in (".mp4", ".csv", ".json") if side.with_suffix(s).exists()]


def _fit(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` shrunk so its long side is at most ``side`` (never enlarged)."""
    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return img
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
