"""Drive the monitor's pipeline with a drift detector over footage or the simulated line.

``scan`` is what the monitor does per step, offline: ``Pipeline.step`` then
``DriftDetector.update`` with the step's residual, usable when the step was calm
(``StepOutput.calm``: line running, no slow-down up, camera and sensors working).
``false_drift_rate`` scans long runs of normal simulated operation (no faults, no drift) and
counts detections per 24 h of line time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from foresight.drift.changes import DriftEvent
from foresight.drift.config import DriftConfig
from foresight.drift.detector import DriftDetector
from foresight.errors import InputError
from foresight.model.checkpoint import ModelBundle, load_model
from foresight.pipeline import Pipeline
from foresight.sim.config import SimConfig

log = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """What one scan saw: detector samples, the events raised and the line time covered."""

    seconds: float
    samples: list[float] = field(default_factory=list)
    events: list[DriftEvent] = field(default_factory=list)


def sim_steps(
    sim: SimConfig,
    seconds: float,
    image_size: int,
    fps: float,
    seed: int | None = None,
    roi: tuple[int, int, int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The simulated line at the model's rate, cropped to ``roi`` and resized like ingest:
    (frame (S, S, 3) uint8 RGB, raw sensors (6,))."""
    from foresight.sim.camera import CodecStream
    from foresight.sim.line import LineSim

    line = LineSim(sim, seed=sim.seed if seed is None else seed, horizon_s=seconds + 1.0)
    line = CodecStream(line, sim.fps)  # as recorded footage looks
    half, next_t = 0.5 / sim.fps, 0.0
    f = line.step()
    for _ in range(int(round(seconds * fps))):
        while f.t < next_t - half:
            f = line.step()
        img = f.frame
        if roi is not None:
            x, y, w, h = roi
            img = img[y : y + h, x : x + w]
        frame = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
        yield frame, np.asarray(f.sensors, np.float32)
        next_t += 1.0 / fps


def scan(
    pipe: Pipeline,
    steps: Iterable[tuple[np.ndarray, np.ndarray]],
    cfg: DriftConfig,
    *,
    detector: DriftDetector | None = None,
    t0: float = 0.0,
    total: int | None = None,
    stop_at_first: bool = False,
    progress: bool = False,
) -> ScanResult:
    """Run ``pipe`` over ``steps`` with a drift detector; acknowledges after each event (as an
    operator would) so one long run can count several."""
    det = detector or DriftDetector(cfg, pipe.channels)
    events: list[DriftEvent] = []
    samples: list[float] = []
    n = 0
    for k, (frame, raw) in enumerate(tqdm(steps, total=total, disable=not progress, desc="drift")):
        now = t0 + k / pipe.fps
        out = pipe.step(frame, raw, now)
        ev = det.update(out.residual, out.calm, now)
        n = k + 1
        if ev is not None:
            log.info("drift at %.0f s: %s (rise %.2f)", now, ev.kind, ev.rise)
            events.append(ev)
            samples += det.values
            det.acknowledge()
            if stop_at_first:
                break
    return ScanResult(n / pipe.fps, samples + det.values, events)


def _load(model: Path | ModelBundle) -> Pipeline:
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    return Pipeline(bundle)


def false_drift_rate(
    model: Path | ModelBundle,
    sim: SimConfig,
    cfg: DriftConfig,
    *,
    hours: float,
    runs: int = 1,
    progress: bool = False,
) -> dict:
    """Detections per 24 h of normal simulated operation (no faults, no wear, no lighting change),
    over ``runs`` seeded runs of ``hours`` each, with an exact 95 % Poisson interval."""
    if not (hours > 0 and math.isfinite(hours)) or runs < 1:
        raise InputError(f"false_drift_rate needs hours > 0 and runs >= 1, got {hours}, {runs}")
    normal = sim.model_copy(
        update={
            "faults_per_hour": 0.0,
            "bearing_wear_per_hour": 0.0,
            "lighting_change_at": None,
            "supplier_change_at": None,
        }
    )
    pipe = _load(model)
    size, fps = int(pipe.bundle.data["image_size"]), pipe.fps
    count, seconds, kinds = 0, 0.0, []
    roi = pipe.bundle.roi
    for r in range(runs):
        pipe.reset()
        steps = sim_steps(normal, hours * 3600.0, size, fps, seed=normal.seed + 1000 + r, roi=roi)
        res = scan(pipe, steps, cfg, total=int(hours * 3600 * fps), progress=progress)
        count += len(res.events)
        seconds += res.seconds
        kinds += [e.kind for e in res.events]
    days = seconds / 86400.0
    lo = stats.chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
    hi = stats.chi2.ppf(0.975, 2 * count + 2) / 2
    return {
        "events": count,
        "kinds": kinds,
        "hours": round(seconds / 3600.0, 3),
        "runs": runs,
        "per_day": count / days,
        "per_day_ci": (lo / days, hi / days),
        "sample_seconds": cfg.sample_seconds,
        "detector": cfg.detector,
    }


def drift_run(
    model: Path | ModelBundle,
    sim: SimConfig,
    cfg: DriftConfig,
    *,
    minutes: float,
    progress: bool = False,
) -> ScanResult:
    """Scan ``minutes`` of the simulated line as configured (e.g. with wear or a lighting
    change) until the first drift event."""
    pipe = _load(model)
    size, fps = int(pipe.bundle.data["image_size"]), pipe.fps
    steps = sim_steps(sim, minutes * 60.0, size, fps, roi=pipe.bundle.roi)
    return scan(
        pipe, steps, cfg, total=int(minutes * 60 * fps), stop_at_first=True, progress=progress
    )
