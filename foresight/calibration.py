"""Calibrate a trained model for the monitor, on held-out normal footage, with no labelled faults.

``calibrate_model`` runs the monitor's own feature stream over each held-out recording, learns
what running looks like (belt speed, image motion), fits the residual tracker's robust statistics,
replays the tracker to get the score the alarm engine will see, and sets the alarm thresholds to
the configured false-alarm rate (``alarms.false_alarms_per_shift``). Everything is stored in the
model bundle: arrays in ``extra`` (saved with the weights by orbax), settings, thresholds and the
calibration report in the model card.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from foresight.alarms.calibrate import calibrate_thresholds, settling
from foresight.alarms.config import AlarmConfig
from foresight.errors import InputError
from foresight.model.checkpoint import ModelBundle
from foresight.model.predictor import Predictor
from foresight.pipeline import (
    RUNNING_FRACTION,
    FeatureStream,
    LineRefs,
    OcclusionGate,
    SpeedChangeGate,
    grey_of,
)
from foresight.residuals.config import ResidualConfig
from foresight.residuals.tracker import (
    COMPONENTS,
    Z_GLOBAL,
    Calibration,
    ResidualTracker,
    border_mask,
    fit_calibration,
)

log = logging.getLogger(__name__)

Stream = tuple[dict[str, Any], np.ndarray, np.ndarray]  # (record, frames, sensors)


def line_refs(streams: list[Stream], channels: tuple[str, ...]) -> LineRefs:
    """Typical running belt speed and image motion of the calibration footage."""
    belt, motion = [], []
    for _, frames, sensors in streams:
        if "belt_speed" in channels:
            belt.append(np.asarray(sensors[:, channels.index("belt_speed")], np.float64))
        motion.append(_motion(frames)[1:])
    return LineRefs(belt_speed=_running_median(belt), motion=_running_median(motion))


def _running_median(parts: list[np.ndarray]) -> float:
    """Median of the values above a share of the 95th percentile (the line's running level)."""
    if not parts:
        return math.nan
    x = np.concatenate(parts)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan
    top = np.percentile(x, 95)
    run = x[x > RUNNING_FRACTION * top]
    return float(np.median(run)) if len(run) and top > 0 else math.nan


def _motion(frames: np.ndarray) -> np.ndarray:
    """Mean absolute grey-level change from the previous frame (NaN for the first)."""
    grey = grey_of(np.asarray(frames))
    return np.concatenate([[np.nan], np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))])


def running_mask(
    frames: np.ndarray, sensors: np.ndarray, channels: tuple[str, ...], refs: LineRefs
) -> np.ndarray:
    """Per-step running flag: ``LineRefs.running``, the rule the pipeline applies."""
    motion = _motion(frames)
    belt = (
        np.asarray(sensors[:, channels.index("belt_speed")], np.float64)
        if "belt_speed" in channels
        else np.full(len(frames), np.nan)
    )
    return np.array([refs.running(float(b), float(m)) for b, m in zip(belt, motion, strict=True)])


def stream_features(
    predictor: Predictor, rcfg: ResidualConfig, frames: np.ndarray, sensors: np.ndarray, bar=None
) -> dict[str, np.ndarray]:
    """Raw residual features (T, ...) of one recording, as the monitor computes them."""
    fs = FeatureStream(predictor, rcfg)
    out: dict[str, list[np.ndarray]] = {c: [] for c in COMPONENTS}
    for i in range(len(frames)):
        f = fs.step(np.asarray(frames[i]), np.asarray(sensors[i], np.float32), learn=True)
        for c in COMPONENTS:
            out[c].append(f[c])
        if bar is not None:
            bar.update(1)
    return {c: np.stack(v) for c, v in out.items()}


def calibrate_model(
    bundle: ModelBundle,
    streams: Iterable[Stream],
    rcfg: ResidualConfig,
    acfg: AlarmConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit residual statistics and alarm thresholds on normal footage; updates ``bundle``."""
    streams = [s for s in streams if len(s[1]) > 1]
    if not streams:
        raise InputError("calibration needs held-out normal footage; none was given")
    fps = float(bundle.data["fps"])
    channels = tuple(bundle.data.get("channels", ()))
    refs = line_refs(streams, channels)
    pred = Predictor(bundle)
    warm = max(pred.steps) + round(rcfg.warmup_seconds * fps)
    total = sum(len(f) for _, f, _ in streams)
    feats, masks, runs = [], [], []
    with tqdm(total=total, desc="calibrate", unit="frame", disable=not progress) as bar:
        for _, frames, sensors in streams:
            f = stream_features(pred, rcfg, frames, sensors, bar)
            run = running_mask(frames, sensors, channels, refs)
            ok = run.copy()
            ok[:warm] = False  # the model's warm-up: no score, but not a line stop either
            feats.append(f)
            masks.append(ok)
            runs.append(run)
    # Cumulative counters (seen as per-frame differences) tick once per carton: their residual is
    # a periodic spike, not a fault signal, so it is reported but does not feed the score.
    counters = set(bundle.model_cfg.diff_channels)
    sensor_mask = np.array([c not in counters for c in channels], bool)
    cal = fit_calibration(
        ({c: f[c][m] for c in COMPONENTS} for f, m in zip(feats, masks, strict=True)),
        sensor_mask,
        rcfg.tail_quantile,
        border_mask(feats[0]["pixel"].shape[-1], rcfg.border_fraction),
    )
    rcfg = rcfg.model_copy(update={"occlusion_fraction": occlusion_level(rcfg, cal, feats, masks)})
    series = []
    horizon = max(bundle.model_cfg.horizons)
    for (_, _, sensors), f, m, run in zip(streams, feats, masks, runs, strict=True):
        scores = engine_scores(rcfg, cal, fps, channels, horizon, sensors, f, m)
        # Each recording starts the model cold, which the pipeline hands the engine as a restart
        # (not running while warming up), so its transient settles as after a line stop.
        engine_run = run.copy()
        engine_run[:warm] = False
        series.append((np.arange(len(m)) / fps, scores, engine_run))
    thr, report = calibrate_thresholds(acfg, series)
    report["restart_settle_s"] = restart_settle(acfg, thr, series)
    # A recalibration replaces every residual array (a mask the new fit does not use must go).
    for key in [k for k in bundle.extra if k.startswith("residuals.")]:
        del bundle.extra[key]
    bundle.extra.update(cal.to_arrays())
    bundle.extra.update(refs.to_arrays())
    summary = {
        "residuals": rcfg.model_dump(mode="json"),
        "alarms": acfg.model_dump(mode="json"),
        "thresholds": thr.to_dict(),
        "report": _jsonable(report),
        "footage": {
            "recordings": len(streams),
            "seconds": round(total / fps, 1),
            "scored_seconds": round(sum(int(m.sum()) for m in masks) / fps, 1),
            "names": [str(r.get("name", "")) for r, _, _ in streams][:50],
        },
    }
    bundle.card["calibration"] = summary
    log.info(
        "calibrated on %.0f s of normal footage: alarm threshold %.2f (clear %.2f, watch %.2f)",
        summary["footage"]["scored_seconds"],
        thr.alarm,
        thr.clear,
        thr.watch,
    )
    return summary


def engine_scores(
    rcfg: ResidualConfig,
    cal: Calibration,
    fps: float,
    channels: tuple[str, ...],
    horizon: float,
    sensors: np.ndarray,
    feats: dict[str, np.ndarray],
    usable: np.ndarray,
) -> np.ndarray:
    """The score the alarm engine sees at each step of one recording, as ``Pipeline.step`` hands
    it over (NaN while occluded, while the speed changes, and on steps not ``usable``): the
    tracker, occlusion gate and speed-change gate replayed over precomputed raw features."""
    tracker = ResidualTracker(rcfg, cal, fps)
    gate, speed = OcclusionGate(rcfg, horizon), SpeedChangeGate(rcfg, channels, horizon)
    scores = np.full(len(usable), np.nan)
    for i in range(len(usable)):
        changing = speed.update(i / fps, sensors[i])
        if not usable[i]:
            continue
        res = tracker.update({c: feats[c][i] for c in COMPONENTS})
        occluded = gate.update(i / fps, res.global_fraction)
        scores[i] = math.nan if occluded or changing else res.score
    return scores


def restart_settle(acfg: AlarmConfig, thr: Any, series: list) -> float | None:
    """Mean time alarms stay suspended after a restart in the calibration footage (the engine's
    settling rule on the calibrated band), for the report; None without restarts."""
    held, restarts = 0.0, 0
    for t, scores, run in series:
        restarts += int(np.count_nonzero(run[1:] & ~run[:-1]))
        held += np.count_nonzero(settling(acfg, t, scores, run, thr.settle_level)) * np.median(
            np.diff(t)
        )
    return round(float(held) / restarts, 2) if restarts else None


def occlusion_level(
    rcfg: ResidualConfig, cal: Calibration, feats: list[dict], masks: list[np.ndarray]
) -> float:
    """The occlusion gate's level for this model: ``residuals.occlusion_fraction``, or twice the
    99th percentile of the share of diverging regions on normal footage when that is higher (a
    model that fits its line less tightly, or a coarser grid, would otherwise be 'occluded' in
    normal running); never above ``global_fraction``. Passing hands and shadows take well under
    1 % of normal time, so they do not set the percentile."""
    shares = [
        np.mean((f["pixel"][m, 0] - cal.center["pixel"][0]) / cal.scale["pixel"][0] > Z_GLOBAL, -1)
        for f, m in zip(feats, masks, strict=True)
        if m.any() and f["pixel"].shape[-1]
    ]
    if not shares:
        return rcfg.occlusion_fraction
    p99 = float(np.percentile(np.concatenate(shares), 99))
    return float(min(rcfg.global_fraction, max(rcfg.occlusion_fraction, 2.0 * p99)))


def _jsonable(x: Any) -> Any:
    """Numbers and arrays in a report to plain JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
