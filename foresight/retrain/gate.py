"""The promotion gate: a candidate must be no worse than the current model, still alarm on past
incidents, and meet the false-alarm target.

Checks, each recorded in the gate report (``gate.json``):

1. **Prediction error** on held-out recent normal footage (clips neither model trained on): the
   mean squared frame error over horizons (pixels in [0, 1]) and the mean squared sensor error in
   units of the *current* model's sensor spread (one yardstick for both; counters left out). The
   candidate may exceed the current model by at most ``retrain.error_tolerance``. A NaN (broken
   weights) fails.
2. **False alarms** on the same footage, each model at its own calibrated thresholds (the
   monitor's pipeline and alarm engine). Held-out footage is short, so counts are tested, not
   compared raw: the candidate fails when its count is significantly (one-sided 5 %) above the
   current model's (binomial test at equal exposure) or above the configured target
   ``alarms.false_alarms_per_shift`` (exact Poisson test).
3. **Regression set**: labelled incident clips (simulator ``labels.json``). The candidate must
   raise an alarm inside every incident's precursor window that the current model caught
   (``retrain.regression_strict``: every incident). With no regression set the check is skipped
   and the report says so.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from foresight.alarms.config import AlarmConfig
from foresight.evaluate.run import Recording, load_recordings
from foresight.model.checkpoint import ModelBundle, load_model
from foresight.pipeline import Pipeline
from foresight.retrain.config import RetrainConfig

log = logging.getLogger(__name__)
ALPHA = 0.05  #: one-sided significance of the false-alarm tests


def recordings(dirs: list[Path], bundle: ModelBundle) -> list[Recording]:
    """The clips under ``dirs`` as ``bundle`` sees them (its size, rate, channels and crop)."""
    d = bundle.data
    return list(
        load_recordings(dirs, int(d["image_size"]), float(d["fps"]), tuple(d.get("channels", ())),
                        bundle.roi)
    )  # fmt: skip


def measure(bundle: ModelBundle, recs: list[Recording], yardstick: np.ndarray) -> dict[str, Any]:
    """Prediction errors, alarm onsets and running time of one model over recordings."""
    pipe = Pipeline(bundle)
    steps = pipe.features.steps
    mean, std = np.asarray(bundle.norm.mean), np.asarray(bundle.norm.std)
    plain = ~np.asarray(bundle.norm.diff, bool)
    f_err, s_err, n_f, n_s = 0.0, 0.0, 0, 0
    onsets, running, traces = 0, 0, []
    for rec in recs:
        pipe.reset()
        past: deque = deque(maxlen=max(steps) + 1)
        alarm = np.zeros(len(rec.frames), bool)
        for k in range(len(rec.frames)):
            frame, raw = rec.frames[k], rec.sensors[k]
            out = pipe.step(frame, raw, k / pipe.fps)
            x = frame.astype(np.float32) / 255.0
            for i, h in enumerate(steps):
                if len(past) >= h:
                    fr, se = past[-h]
                    f_err += float(np.mean((x - fr[i]) ** 2))
                    n_f += 1
                    pred = se[i] * std + mean
                    d = ((pred - raw) / yardstick)[plain & np.isfinite(raw)]
                    if d.size:
                        s_err += float(np.mean(d**2))
                        n_s += 1
            fc = pipe.features.history[-1]
            past.append((np.asarray(fc.frame[0]), np.asarray(fc.sensors[0])))
            alarm[k] = out.alarm
            running += int(out.running)
            onsets += int(out.alarm and (k == 0 or not alarm[k - 1]))
        traces.append(alarm)
    return {
        "frame_mse": f_err / n_f if n_f else math.nan,
        "sensor_mse": s_err / n_s if n_s else math.nan,
        "false_alarms": onsets,
        "running_hours": running / pipe.fps / 3600.0,
        "traces": traces,
        "fps": pipe.fps,
    }


def caught(recs: list[Recording], traces: list[np.ndarray], fps: float) -> list[dict[str, Any]]:
    """Per labelled incident: was an alarm onset inside its precursor window?"""
    out = []
    for rec, alarm in zip(recs, traces, strict=True):
        t = np.arange(len(alarm)) / fps
        on = np.flatnonzero(alarm & ~np.concatenate([[False], alarm[:-1]]))
        for f in rec.faults:
            lo = float(f.get("precursor_start", math.nan))
            hi = f.get("jam_onset")
            hi = float(hi) if hi is not None else lo + 10.0
            hit = any(lo <= t[i] <= hi for i in on)
            out.append({"file": rec.name, "type": f.get("type"), "start": lo, "caught": hit})
    return out


def _fa_checks(cur: dict, cand: dict, acfg: AlarmConfig, target: float | None) -> dict[str, Any]:
    a, b = cand["false_alarms"], cur["false_alarms"]
    p_worse = float(stats.binom.sf(a - 1, a + b, 0.5)) if a > b else 1.0
    target = target or acfg.false_alarms_per_shift
    expected = target * cand["running_hours"] / acfg.shift_hours
    p_target = float(stats.poisson.sf(a - 1, expected)) if a > 0 else 1.0
    return {
        "not_worse": {"passed": p_worse >= ALPHA, "candidate": a, "current": b, "p": p_worse},
        "target": {
            "passed": p_target >= ALPHA,
            "count": a,
            "expected_at_target": round(expected, 4),
            "target_per_shift": target,
            "p": p_target,
        },
    }


def run_gate(
    current: Path,
    candidate: Path,
    holdout: list[Path],
    cfg: RetrainConfig,
    acfg: AlarmConfig,
    regression: Path | None = None,
    progress=None,
) -> dict[str, Any]:
    """Measure both models and decide; returns the gate report (``passed`` and every figure)."""
    cur_b, cand_b = load_model(current), load_model(candidate)
    yard = np.maximum(np.asarray(cur_b.norm.std, np.float64), 1e-6)
    hold_cur, hold_cand = recordings(holdout, cur_b), recordings(holdout, cand_b)
    if not hold_cur:
        from foresight.errors import InputError

        raise InputError(f"{', '.join(map(str, holdout))}: no held-out clips for the gate")
    cur = measure(cur_b, hold_cur, yard)
    _tick(progress, 0.5, "gate: current model measured")
    cand = measure(cand_b, hold_cand, yard)
    _tick(progress, 0.7, "gate: candidate measured")
    checks: dict[str, Any] = {}
    for key in ("frame_mse", "sensor_mse"):
        c, n = cur[key], cand[key]
        ok = math.isfinite(n) and (not math.isfinite(c) or n <= c * (1 + cfg.error_tolerance))
        checks[key] = {"passed": bool(ok), "current": c, "candidate": n}
    checks |= _fa_checks(cur, cand, acfg, cfg.false_alarms_per_shift)
    checks["regression"] = _regression(cur_b, cand_b, regression, cfg)
    failed = [k for k, v in checks.items() if not v.get("passed", True)]
    return {
        "passed": not failed,
        "failed": failed,
        "summary": "passed" if not failed else "failed: " + ", ".join(failed),
        "current": str(current),
        "candidate": str(candidate),
        "holdout": [r.name for r in hold_cur],
        "holdout_hours": round(cand["running_hours"], 4),
        "checks": checks,
    }


def _regression(cur_b, cand_b, folder: Path | None, cfg: RetrainConfig) -> dict[str, Any]:
    """The regression-set check (skipped, with a note, when there is no labelled set)."""
    if folder is None or not Path(folder).is_dir():
        return {"passed": True, "skipped": True, "note": "no regression set configured"}
    rc, rn = recordings([Path(folder)], cur_b), recordings([Path(folder)], cand_b)
    if not any(r.faults for r in rc):
        return {"passed": True, "skipped": True, "note": f"{folder}: no labelled incidents"}
    yard = np.ones(len(cur_b.data.get("channels", ())))
    mc, mn = measure(cur_b, rc, yard), measure(cand_b, rn, yard)
    was, now = caught(rc, mc["traces"], mc["fps"]), caught(rn, mn["traces"], mn["fps"])
    need = [i for i, w in enumerate(was) if cfg.regression_strict or w["caught"]]
    lost = [now[i] for i in need if not now[i]["caught"]]
    return {
        "passed": not lost,
        "skipped": False,
        "incidents": len(was),
        "required": len(need),
        "caught_by_current": sum(w["caught"] for w in was),
        "caught_by_candidate": sum(n["caught"] for n in now),
        "lost": lost,
        "note": "" if need else "the current model catches none of them: nothing to regress",
    }


def _tick(progress, frac: float, msg: str) -> None:
    if progress is not None:
        progress(frac, msg)
