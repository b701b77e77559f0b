"""``foresight bench nab``: the sensor-only world model on NAB v1.1 files, online, NAB's scoring.

Per file (5-minute samples), every row's score uses only rows up to it:

1. **World model.** The probationary period (first ``min(floor(0.15 n), 750)`` rows, not scored)
   is all the model learns from: the series is normalised on, and the GRU trained on, its first
   two thirds (``fit_rows``); the residual tracker is calibrated on the last third.
2. **Tracker.** ``monitor.track`` runs the monitor's ``ResidualTracker`` over the whole file: the
   raw score, whose scale differs from file to file.
3. **Likelihood** (``surprise``). Each row's raw score is made comparable across files against
   the file's own history: the mean of the score over the last ``short`` rows is compared with a
   Gaussian fitted to all earlier such means of that file (rows from ``fit_rows`` on, none after
   the row), and the row's surprise is ``-log10`` of the upper tail probability of its mean under
   it (0.30 at the median, 3 for one chance in a thousand). The history keeps growing and
   includes every row, so a lasting regime change enters it and, as it widens, stops alarming.
4. **Onsets** (``onsets``). The product's alarm engine (``monitor.alarms``) runs on the surprise
   with thresholds set on that probability scale (``likelihood_thresholds``: alarm at a level,
   clear a deadband below it, towards the median 0.30); a detection is a row where a slow-down
   starts, and after one no other detection counts for ``hold`` rows (1 day), so an incident is
   one detection, as NAB credits only the first detection in a window and charges every one
   outside.

Two figures, each for NAB's three profiles:

- **label-free**: the alarm level is the per-row tail probability of the product's false-alarm
  target, ``-log10(per_hour * 300 s / 3600 s)`` (one a week: 3.30), the same for every file; no
  label and no other file is looked at;
- **corpus sweep**: as the leaderboard is made, one alarm level per profile for all files here,
  chosen from the grid ``LEVELS`` (1 to 9.95 by 0.05, 10 to 39.5 by 0.5, and "never") to
  maximise the corpus total (ties: the highest level); the detections at each level are step
  4's, so the sweep picks the level, nothing else.

The alarm engine's own label-free calibration (``monitor.thresholds``, a tail fit on ~200
calibration rows of the raw score) is not used: the surprise's scale is known.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_ndtr

from foresight.alarms import AlarmConfig, Thresholds
from foresight.errors import InputError
from foresight.realdata import monitor as mon
from foresight.realdata import nab_scoring as ns
from foresight.realdata.common import add_bench_parser, data_dir, table, write_json
from foresight.realdata.sensormodel import SensorModelConfig, fit_model, forecast_series
from foresight.residuals.config import ResidualConfig

log = logging.getLogger(__name__)
DT = 300.0  # seconds per sample (NAB's AWS and known-cause files are 5-minute series)
BASELINE = math.log10(2.0)  # surprise of the median: -log10(1/2)
SD_FLOOR = 1e-3  # score units: the spread of a history that never varied
#: alarm levels the corpus sweep tries (surprise, -log10 of a tail probability); inf: never
LEVELS = np.concatenate([np.arange(100, 1000, 5) / 100, np.arange(20, 80) / 2, [np.inf]])


@dataclass(frozen=True)
class NabSettings:
    """Every choice of the NAB run (none looks at labels)."""

    model: SensorModelConfig = SensorModelConfig(
        hidden=16, horizons=(1, 3, 12), steps=300, window=64, burn_in=4, input_noise=0.1
    )
    residuals: ResidualConfig = ResidualConfig(
        components=("latent", "sensor"),
        smooth_seconds=1.0,
        warmup_seconds=0.0,
        tail_quantile=None,  # short training parts: the MAD (see residuals.tracker)
    )
    level: mon.LevelConfig | None = None  # off: chosen before any NAB run with it (see BENCHMARKS)
    per_hour: float = 1 / 168  # one false alarm per week
    off_delay_s: float = 2 * DT  # the engine allows at most 600 s
    realarm_s: float = 12 * DT  # the engine allows at most 3600 s
    short: int = 10  # rows (50 min) in the score mean the likelihood judges
    min_history: int = 20  # earlier means needed before a row is judged
    hold: int = 288  # rows (1 day): no new detection this long after one

    def alarm_level(self) -> float:
        """The label-free alarm level: surprise of the false-alarm target per row."""
        return -math.log10(self.per_hour * DT / 3600.0)


@dataclass(frozen=True)
class NabFile:
    """One series with its windows as inclusive row ranges."""

    name: str
    values: np.ndarray
    windows: list[tuple[int, int]]


def load_corpus(root: Path) -> list[NabFile]:
    """Every CSV under ``data/`` with its windows from ``labels/combined_windows.json``."""
    import pandas as pd

    label_path = root / "labels" / "combined_windows.json"
    try:
        labels = json.loads(label_path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{label_path}: cannot read NAB windows ({e})") from e
    files = sorted((root / "data").glob("*/*.csv"))
    if not files:
        raise InputError(f"{root / 'data'}: no NAB CSV files (data/<category>/<name>.csv)")
    out = []
    for p in files:
        key = f"{p.parent.name}/{p.name}"
        if key not in labels:
            raise InputError(f"{label_path}: no entry for {key}")
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: cannot read NAB CSV ({e})") from e
        missing = [c for c in ("timestamp", "value") if c not in df.columns]
        if missing:
            raise InputError(f"{p}: missing column(s) {', '.join(missing)}")
        values = pd.to_numeric(df["value"], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{p}: NaN or non-numeric value (line {_bad(values) + 2})")
        times = pd.to_datetime(df["timestamp"], errors="coerce")
        if times.isna().any():
            raise InputError(f"{p}: unparseable timestamp (line {_bad(times.isna()) + 2})")
        index = {t: i for i, t in enumerate(times)}
        wins = []
        for lo, hi in labels[key]:
            a, b = index.get(pd.Timestamp(lo)), index.get(pd.Timestamp(hi))
            if a is None or b is None:
                raise InputError(f"{label_path}: window {lo}..{hi} of {key} not on a row")
            wins.append((a, b))
        out.append(NabFile(p.stem, values, wins))
    return out


def _bad(mask_or_values: Any) -> int:
    arr = np.asarray(mask_or_values)
    bad = arr if arr.dtype == bool else ~np.isfinite(arr)
    return int(np.flatnonzero(bad)[0])


def surprise(score: np.ndarray, start: int, short: int = 10, min_history: int = 20) -> np.ndarray:
    """Causal likelihood of a score series against its own history, as ``-log10`` of a tail.

    Row ``t``'s mean ``m_t`` is the mean of ``score[t - short + 1 .. t]`` (NaN unless all those
    rows are at or after ``start`` and finite). A Gaussian is fitted to the means of all earlier
    rows (``m_s``, ``s < t``, mean and standard deviation, at least ``SD_FLOOR``); row ``t`` gets
    ``-log10 P(M >= m_t)`` under it, NaN with fewer than ``min_history`` earlier means. Nothing
    after row ``t`` enters its value.

    >>> u = surprise(np.r_[np.tile([0.0, 1.0], 20), 5.0], 0, short=1)
    >>> [round(float(v), 2) for v in u[[20, 21, 40]]]
    [0.08, 0.83, 18.95]
    """
    if short < 1 or min_history < 2:
        raise InputError(f"likelihood: short >= 1 and min_history >= 2, got {short}, {min_history}")
    x = np.asarray(score, np.float64)
    n = x.size
    ok = np.isfinite(x) & (np.arange(n) >= start)
    run = np.cumsum(np.r_[0, ok])
    csum = np.cumsum(np.r_[0.0, np.where(ok, x, 0.0)])
    i = np.arange(n)
    lo = np.maximum(i + 1 - short, 0)
    full = (run[i + 1] - run[lo] == short) & (i + 1 >= short)
    m = np.where(full, (csum[i + 1] - csum[lo]) / short, np.nan)
    have = np.isfinite(m)
    shift = m[have][0] if have.any() else 0.0  # numerics only: centred on the first mean
    d = np.where(have, m - shift, 0.0)
    k = np.cumsum(np.r_[0, have])[:-1]  # earlier means, per row
    s1 = np.cumsum(np.r_[0.0, d])[:-1]
    s2 = np.cumsum(np.r_[0.0, d * d])[:-1]
    with np.errstate(all="ignore"):
        mu = s1 / k
        sd = np.maximum(np.sqrt(np.maximum(s2 / k - mu * mu, 0.0)), SD_FLOOR)
        z = (d - mu) / sd
    out = np.full(n, np.nan)
    judge = have & (k >= min_history)
    out[judge] = -log_ndtr(-z[judge]) / math.log(10.0)
    return out


def likelihood_thresholds(level: float, cfg: AlarmConfig) -> Thresholds:
    """Alarm engine thresholds on the surprise scale: alarm at ``level``; clear the engine's
    deadband below it towards the median (``BASELINE``); watch where the tail is ``watch_factor``
    times as likely (never above alarm)."""
    level = max(float(level), BASELINE)
    watch = -math.log10(min(cfg.watch_factor * 10.0**-level, 0.5))
    clear = level - cfg.deadband * (level - BASELINE)
    return Thresholds(watch=min(watch, level), alarm=level, clear=clear, baseline=BASELINE)


def onsets(cfg: AlarmConfig, level: float, u: np.ndarray, first: int, hold: int) -> np.ndarray:
    """Rows (from ``first`` on) where the alarm engine starts a slow-down on surprise ``u`` at
    ``level``, keeping only those more than ``hold`` rows after the last one kept.

    >>> cfg = mon.alarm_config(1 / 168, off_delay_s=2 * DT, realarm_s=12 * DT)
    >>> u = np.zeros(30)
    >>> u[[1, 4, 25]] = 4.0
    >>> onsets(cfg, 3.0, u, 0, 5).tolist()
    [1, 25]
    """
    if not math.isfinite(level):
        return np.zeros(0, int)
    v = np.asarray(u, np.float64).copy()
    v[:first] = np.nan
    _, starts = mon.alarms(cfg, likelihood_thresholds(level, cfg), v, DT)
    kept: list[int] = []
    for r in starts:
        if r >= first and (not kept or r - kept[-1] > hold):
            kept.append(int(r))
    return np.array(kept, int)


def score_file(f: NabFile, s: NabSettings) -> dict[str, Any]:
    """Online scores of one file: the tracker score, its surprise and the label-free onsets."""
    p = ns.probation(len(f.values))
    fit_rows = (2 * p) // 3
    if fit_rows <= s.model.burn_in + max(s.model.horizons) + 2:
        raise InputError(f"{f.name}: probationary period of {p} rows is too short to learn from")
    x = f.values[:, None]
    xn = mon.Normaliser.fit(x[:fit_rows], f.name)(x)
    fit = fit_model([xn[:fit_rows]], s.model)
    mean, logvar = forecast_series(fit.graphdef, fit.params, xn)
    feats = mon.due_features(xn, mean, logvar, s.model.horizons)
    if s.level is not None:
        feats = mon.with_level(feats, mon.LevelHead.fit(xn[:fit_rows], s.level), xn)
    cal = mon.calibrate([{k: v[fit_rows:p] for k, v in feats.items()}], s.residuals)
    score = mon.track(feats, cal, s.residuals)[0]
    u = surprise(score, fit_rows, s.short, s.min_history)
    detected = np.zeros(len(score), bool)
    detected[onsets(engine_config(s), s.alarm_level(), u, p, s.hold)] = True
    return {"score": score, "surprise": u, "detected": detected, "first": p}


def engine_config(s: NabSettings) -> AlarmConfig:
    """The alarm engine's configuration for NAB's 5-minute rows."""
    return mon.alarm_config(s.per_hour, off_delay_s=s.off_delay_s, realarm_s=s.realarm_s)


def sweep_levels(
    files: list[tuple[ns.RowWeights, list[np.ndarray]]], levels: np.ndarray = LEVELS
) -> tuple[float, float]:
    """The level maximising the corpus total (ties: the highest), and that total; per file its
    row weights and its detected rows at each of ``levels``."""
    total = np.zeros(len(levels))
    for rw, dets in files:
        for j, rows in enumerate(dets):
            det = np.zeros(rw.weight.size, bool)
            det[rows] = True
            total[j] += ns.file_score(rw, det & (rw.window != ns.PROBATION))
    j = len(levels) - 1 - int(np.argmax(total[::-1]))
    return float(levels[j]), float(total[j])


def published(root: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Per profile, file -> detector -> published per-file normalised score (raw for 0 windows,
    under the key ``raw:<detector>``), parsed from ``LEADERBOARD.md``."""
    path = root / "LEADERBOARD.md"
    if not path.exists():
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    profile, header = None, None
    for line in path.read_text().splitlines():
        m = re.match(r"#### Profile `(\w+)`", line)
        if m:
            profile, header = m.group(1), None
            out[profile] = {}
            continue
        if profile is None or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "file":
            header = cells
            continue
        if header:
            row = {}
            for det, v in zip(header[2:], cells[2:], strict=False):
                raw = v.startswith("raw ")
                row[("raw:" if raw else "") + det] = float(v.removeprefix("raw "))
            out[profile][cells[0]] = row
    return out


def run_nab(root: Path, s: NabSettings | None = None) -> dict[str, Any]:
    """Score every file online; both figures for the three profiles."""
    s = s or NabSettings()
    files = load_corpus(root)
    scored = {f.name: score_file(f, s) for f in files}
    cfg = engine_config(s)
    at_level = {
        f.name: [
            onsets(cfg, lv, scored[f.name]["surprise"], scored[f.name]["first"], s.hold)
            for lv in LEVELS
        ]
        for f in files
    }
    out: dict[str, Any] = {"files": len(files), "label_free_level": s.alarm_level(), "profiles": {}}
    for profile in ns.PROFILES:
        rws = {f.name: ns.row_weights(len(f.values), f.windows, profile) for f in files}
        level, _ = sweep_levels([(rws[f.name], at_level[f.name]) for f in files])
        j = int(np.flatnonzero(LEVELS == level)[0])
        figs = {}
        for kind in ("label_free", "sweep"):
            per_file, raw_total, n_total, fps, n_det = {}, 0.0, 0, {}, 0
            for f in files:
                rw = rws[f.name]
                if kind == "label_free":
                    det = scored[f.name]["detected"]
                else:
                    det = np.zeros(len(f.values), bool)
                    det[at_level[f.name][j]] = True
                det = det & (rw.window != ns.PROBATION)
                raw = ns.file_score(rw, det)
                raw_total, n_total = raw_total + raw, n_total + rw.n_windows
                n_det += int(det.sum())
                if rw.n_windows:
                    per_file[f.name] = ns.normalised(raw, rw.n_windows, profile)
                else:
                    fps[f.name] = {"raw": raw, "false_positives": int(det.sum())}
            figs[kind] = {
                "corpus": ns.normalised(raw_total, n_total, profile),
                "mean_per_file": float(np.mean(list(per_file.values()))),
                "per_file": per_file,
                "no_windows": fps,
                "detections": n_det,
            }
        figs["sweep"]["level"] = level
        figs["label_free"]["level"] = s.alarm_level()
        out["profiles"][profile] = figs
    return out


def best_published(pub: dict, profile: str, names: list[str]) -> tuple[str, float]:
    """The published detector with the highest mean per-file score over ``names``."""
    rows = [pub[profile][n] for n in names if n in pub.get(profile, {})]
    if not rows:
        return "-", math.nan
    dets = [d for d in rows[0] if not d.startswith("raw:")]
    means = {d: float(np.mean([r[d] for r in rows])) for d in dets}
    best = max(means, key=means.get)
    return best, means[best]


def markdown(res: dict[str, Any], root: Path) -> str:
    """BENCHMARKS.md body: both figures per profile, per-file rows beside the best published."""
    pub = published(root)
    std = res["profiles"]["standard"]
    names = sorted(std["sweep"]["per_file"])
    rows = []
    for profile, figs in res["profiles"].items():
        det, best = best_published(pub, profile, names)
        rows.append(
            (
                profile,
                figs["label_free"]["mean_per_file"],
                figs["sweep"]["mean_per_file"],
                figs["label_free"]["corpus"],
                figs["sweep"]["corpus"],
                f"{best:.2f} ({det})",
            )
        )
    head = (
        "profile",
        "mean per-file, label-free",
        "mean per-file, corpus sweep",
        "corpus, label-free",
        "corpus, sweep",
        "best published mean per-file",
    )
    det, best = best_published(pub, "standard", names)
    per = [
        (
            n,
            std["label_free"]["per_file"][n],
            std["sweep"]["per_file"][n],
            pub.get("standard", {}).get(n, {}).get(det, math.nan),
        )
        for n in names
    ]
    nowin = [
        (n, v["false_positives"], v["raw"], std["sweep"]["no_windows"][n]["false_positives"])
        for n, v in std["label_free"]["no_windows"].items()
    ]
    met = std["sweep"]["mean_per_file"] > best
    return (
        f"NAB v1.1, {res['files']} files under `{root}` ({len(names)} with windows), online, "
        f"probationary period for learning. The tracker's score is turned into a causal "
        f"likelihood against each file's own history (surprise, -log10 of a tail probability); "
        f"detections are the alarm engine's slow-down starts on it, at most one a day. "
        f"Alarm level: label-free {res['label_free_level']:.2f} (the false-alarm target, one a "
        f"week, as a per-row tail probability) for every file and profile; corpus sweep "
        + ", ".join(f"{p} {f['sweep']['level']:.2f}" for p, f in res["profiles"].items())
        + ". Per-file normalised scores, "
        f"100 (S - S_null) / (S_perfect - S_null); published per-file rows from "
        f"{root}/LEADERBOARD.md (numenta/NAB ea702d7, corpus-tuned thresholds over all 58 "
        f"files).\n\n"
        + table(head, rows)
        + f"\n\nTarget (standard, mean per-file above {best:.2f} of {det}): "
        f"{'met' if met else 'not met'}.\n\nPer file, standard profile:\n\n"
        + table(("file", "label-free", "corpus sweep", f"{det} (published)"), per)
        + "\n\nFiles without windows (standard profile):\n\n"
        + table(
            ("file", "false positives, label-free", "raw score", "false positives, sweep"), nowin
        )
        + "\n\nCheck against published rows: the only detections the leaderboard lets one "
        "reconstruct are the false-positive counts on files without windows (there every "
        "detection weighs -fp); the test suite rebuilds them for every detector and profile. "
        "Detection positions inside windowed files are not published, so those rows cannot be "
        "reconstructed.\n"
    )


def bench_nab(
    data: str | None, benchmarks: str | None, json_out: str | None, s: NabSettings | None = None
) -> str:
    """Run, write the BENCHMARKS.md section and the JSON; returns the markdown."""
    from foresight.bench.report import section, write_section

    root = data_dir(data, "nab")
    res = run_nab(root, s)
    md = section("NAB (sensor path, univariate real streams)", markdown(res, root))
    if benchmarks:
        write_section(benchmarks, "nab", md)
    figures = {
        p: {
            kind: {
                k: v[k]
                for k in (
                    "corpus",
                    "mean_per_file",
                    "per_file",
                    "no_windows",
                    "level",
                    "detections",
                )
            }
            for kind, v in figs.items()
        }
        for p, figs in res["profiles"].items()
    }
    write_json(json_out, {"profiles": figures, "files": res["files"]})
    return md


def register(bsub: Any) -> None:
    """Add ``nab`` to the ``bench`` sub-parsers."""
    add_bench_parser(
        bsub,
        "nab",
        "sensor world model on NAB real streams, NAB scoring",
        "NAB folder (data/, labels/)",
        lambda a: bench_nab(a.data, a.benchmarks, a.json),
    )
