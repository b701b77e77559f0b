"""Render simulated footage to a directory: mp4 clips, same-stem sensor CSVs and labels.json.

Layout of ``out``::

    clip_0000.mp4  clip_0000.csv  clip_0001.mp4  clip_0001.csv  ...  labels.json  sim_config.json

Every clip and CSV is written under a temporary name and renamed when complete; ``labels.json`` is
written last (temporary file + ``os.replace``), so an interrupted run never leaves labels that
describe missing clips.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from foresight.errors import ConfigError, ForesightError
from foresight.schema import SENSOR_CHANNELS
from foresight.sim.config import SimConfig
from foresight.sim.labels import file_table
from foresight.sim.line import LineSim

log = logging.getLogger(__name__)

LABELS = "labels.json"
CONFIG = "sim_config.json"
_FMT = {
    "belt_speed": "%.5f",
    "motor_current": "%.4f",
    "vibration_rms": "%.4f",
    "glue_pressure": "%.4f",
    "photo_eye_count": "%d",
    "feeder_setpoint": "%.3f",
}


@dataclass(frozen=True)
class SimSummary:
    """What ``simulate_to_dir`` wrote."""

    out: Path
    files: int
    hours: float
    frames: int
    fps: float
    faults_by_type: dict[str, int] = field(default_factory=dict)
    jams: int = 0
    averted: int = 0
    good_cartons: int = 0

    def describe(self) -> str:
        """One paragraph for the console."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults_by_type.items())) or "none"
        total = sum(self.faults_by_type.values())
        return (
            f"simulated {self.hours:.3f} h ({self.frames} frames at {self.fps:g} fps) into "
            f"{self.files} file{'s' * (self.files != 1)} in {self.out}\n"
            f"faults: {total} ({kinds}); jams: {self.jams}; averted: {self.averted}; "
            f"good cartons: {self.good_cartons}"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(path: Path, sensors: np.ndarray, fps: float) -> None:
    t = np.arange(len(sensors), dtype=np.float64) / fps
    fmts = ["%.5f"] + [_FMT.get(c, "%.5f") for c in SENSOR_CHANNELS]
    lines = [",".join(("t",) + SENSOR_CHANNELS)]
    for ti, row in zip(t, sensors.astype(np.float64), strict=True):
        vals = [ti, *row]
        lines.append(
            ",".join(
                f % (int(round(v)) if f == "%d" else v) for f, v in zip(fmts, vals, strict=True)
            )
        )
    _atomic_text(path, "\n".join(lines) + "\n")


def _open_writer(path: Path, cfg: SimConfig) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, cfg.fps, (cfg.width, cfg.height))
    if not writer.isOpened():
        raise ForesightError(f"{path}: OpenCV cannot open an mp4v video writer")
    return writer


def _write_clip(sim: LineSim, path: Path, n: int, cfg: SimConfig, bar: tqdm) -> None:
    tmp = path.with_name(f".{path.stem}.partial.mp4")
    writer = _open_writer(tmp, cfg)
    rows = np.empty((n, len(SENSOR_CHANNELS)), np.float32)
    try:
        for j in range(n):
            f = sim.step()
            writer.write(cv2.cvtColor(f.frame, cv2.COLOR_RGB2BGR))
            rows[j] = f.sensors
            if j % 50 == 49:
                bar.update(50)
        bar.update(n % 50)
        writer.release()
        _write_csv(path.with_suffix(".csv"), rows, cfg.fps)
        os.replace(tmp, path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise


def simulate_to_dir(cfg: SimConfig, out: Path, hours: float, progress: bool = True) -> SimSummary:
    """Simulate ``hours`` of the line into ``out``; returns a summary of what was written."""
    if not (hours > 0 and math.isfinite(hours)):
        raise ConfigError(f"--hours: must be a finite number greater than 0 (got {hours!r})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LABELS).unlink(missing_ok=True)
    _atomic_text(out / CONFIG, cfg.model_dump_json(indent=2) + "\n")
    total = max(1, round(hours * 3600.0 * cfg.fps))
    per_clip = max(1, round(cfg.clip_seconds * cfg.fps))
    sim = LineSim(cfg, horizon_s=total / cfg.fps)
    files = file_table(total, per_clip, cfg.fps)
    with tqdm(total=total, unit="frame", disable=not progress, desc="simulate") as bar:
        for k, k0 in enumerate(range(0, total, per_clip)):
            _write_clip(sim, out / files[k]["file"], min(per_clip, total - k0), cfg, bar)
    labels = sim.labels()
    _atomic_text(out / LABELS, json.dumps(labels, indent=1) + "\n")
    events = sim.events
    summary = SimSummary(
        out=out,
        files=len(files),
        hours=total / cfg.fps / 3600.0,
        frames=total,
        fps=cfg.fps,
        faults_by_type=dict(Counter(e.kind for e in events)),
        jams=sum(1 for e in events if e.jam_onset is not None),
        averted=sum(1 for e in events if e.averted),
        good_cartons=sim.good_cartons,
    )
    log.debug("wrote %d clips, %d faults to %s", len(files), len(events), out)
    return summary
