"""Benchmark metrics: detections, lead times and false alarms from alarm traces and labels.

An alarm *onset* is a False->True transition of the alarm trace (or True at the first sample).
A fault is detected by the first onset inside its precursor window ``[precursor_start,
jam_onset]`` (inclusive); its lead is ``jam_onset - onset``. Every onset outside all precursor
windows of its file is a false alarm, as the benchmark's protocol defines it. Those that start
after a jam has formed and before the line stops for it (``(jam_onset, stop]``, the stop from the
labels' line states) are also listed apart as *late*: the jam was real, and the alarm came too
late to help, which tells a tuning engineer something else than an alarm on a healthy line.
False alarms are normalised by the hours the line was ``running`` (per the labels' line states,
clipped to the scored span) and reported per shift.

Intervals: recall uses the Wilson score interval; the median lead uses the distribution-free
order-statistic interval from the binomial(n, 1/2) (its actual coverage is reported, since with
fewer than 6 leads 95 % cannot be reached and the interval falls back to [min, max]); the false-
alarm rate uses the exact (Garwood) Poisson interval from the chi-squared distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from foresight.errors import InputError
from foresight.sim.config import FAULT_TYPES

#: Tolerance (seconds) when comparing onset times with label times.
TIME_EPS = 1e-6
#: Name of the pooled row in summaries and tables.
OVERALL = "all"
MEDIAN_CI_METHOD = "order-statistic (binomial n, 1/2), distribution-free"


@dataclass(frozen=True, eq=False)
class FileResult:
    """One scored file: step times (s from file start), the alarm trace and that file's labels."""

    file: str
    t: np.ndarray
    alarm: np.ndarray
    faults: tuple[Mapping[str, Any], ...] = ()
    line_states: tuple[Mapping[str, Any], ...] = ()
    carried: bool = False  # an alarm already on at the first sample continues from the file before


@dataclass(frozen=True)
class FaultOutcome:
    """What happened to one labelled fault: detected or missed, and the lead when detected."""

    file: str
    fault_type: str
    precursor_start: float
    jam_onset: float
    onset: float | None
    lead: float | None

    @property
    def detected(self) -> bool:
        """True when an alarm onset fell inside the precursor window."""
        return self.onset is not None


@dataclass(frozen=True)
class TypeStats:
    """Recall and lead-time statistics for one fault type (or all types pooled)."""

    fault_type: str
    n: int
    detected: int
    recall: float
    recall_ci: tuple[float, float]
    detected_lead1: int
    recall_lead1: float
    recall_lead1_ci: tuple[float, float]
    median_lead: float
    median_lead_ci: tuple[float, float]
    median_lead_ci_coverage: float
    leads: tuple[float, ...]


@dataclass(frozen=True)
class Summary:
    """Benchmark result of one method over a set of files."""

    by_type: dict[str, TypeStats]
    overall: TypeStats
    false_alarms: int
    running_hours: float
    shift_hours: float
    false_alarms_per_shift: float
    false_alarms_per_shift_ci: tuple[float, float]
    outcomes: tuple[FaultOutcome, ...] = field(default=())
    false_alarm_onsets: tuple[tuple[str, float], ...] = field(default=())
    late_onsets: tuple[tuple[str, float], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN becomes None, tuples become lists)."""
        out = {
            "false_alarms": self.false_alarms,
            "running_hours": self.running_hours,
            "shift_hours": self.shift_hours,
            "false_alarms_per_shift": self.false_alarms_per_shift,
            "false_alarms_per_shift_ci": self.false_alarms_per_shift_ci,
            "false_alarms_ci_method": "exact Poisson (chi-squared)",
            "recall_ci_method": "Wilson score",
            "median_lead_ci_method": MEDIAN_CI_METHOD,
            "overall": asdict(self.overall),
            "by_type": {k: asdict(v) for k, v in self.by_type.items()},
            "faults": [asdict(o) | {"detected": o.detected} for o in self.outcomes],
            "false_alarm_onsets": [{"file": f, "t": t} for f, t in self.false_alarm_onsets],
            "late_alarms": len(self.late_onsets),
            "late_onsets": [{"file": f, "t": t} for f, t in self.late_onsets],
        }
        return _jsonable(out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def labels_for_file(
    labels: Mapping[str, Any], file: str
) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """The faults and line states of ``file`` from a simulator ``labels.json`` dict."""
    faults = tuple(f for f in labels.get("faults", ()) if f.get("file") == file)
    states = tuple(s for s in labels.get("line_states", ()) if s.get("file") == file)
    return faults, states


def alarm_onsets(alarm: np.ndarray, carried: bool = False) -> np.ndarray:
    """Indices of False->True transitions (index 0 counts when the trace starts True, unless the
    alarm is ``carried`` over from the previous file of one continuous recording)."""
    a = np.asarray(alarm, dtype=bool).ravel()
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    prev = np.concatenate([[carried], a[:-1]])
    return np.flatnonzero(a & ~prev)


def wilson_interval(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; (nan, nan) when n == 0."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise InputError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    z = float(stats.norm.ppf(0.5 + conf / 2))
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def poisson_interval(k: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for the mean of a Poisson count k."""
    if k < 0:
        raise InputError(f"poisson_interval: count must be >= 0, got {k}")
    alpha = 1 - conf
    lo = 0.0 if k == 0 else float(stats.chi2.ppf(alpha / 2, 2 * k)) / 2
    hi = float(stats.chi2.ppf(1 - alpha / 2, 2 * k + 2)) / 2
    return (lo, hi)


def median_interval(values: Sequence[float], conf: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free interval for the median: (lo, hi, actual coverage).

    Uses order statistics x(k), x(n-k+1) with the largest k whose coverage
    ``1 - 2 * P(Bin(n, 1/2) <= k-1)`` is at least ``conf``; when no k reaches it (n < 6 at 95 %)
    it returns [min, max] and that interval's smaller coverage.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    ks = np.arange(1, (n + 1) // 2 + 1)
    cover = 1 - 2 * stats.binom.cdf(ks - 1, n, 0.5)
    ok = ks[cover >= conf - 1e-12]
    k = int(ok[-1]) if ok.size else 1
    coverage = float(1 - 2 * stats.binom.cdf(k - 1, n, 0.5))
    return (float(x[k - 1]), float(x[n - k]), max(0.0, coverage))


def _check(result: FileResult) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(result.t, dtype=float).ravel()
    alarm = np.asarray(result.alarm).ravel()
    if t.shape != alarm.shape:
        raise InputError(f"{result.file}: t has {t.size} steps but alarm has {alarm.size}")
    if t.size and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0)):
        raise InputError(f"{result.file}: t must be finite and non-decreasing")
    return t, alarm.astype(bool)


def _window(result: FileResult, fault: Mapping[str, Any]) -> tuple[str, float, float]:
    try:
        kind = str(fault["type"])
        start, jam = float(fault["precursor_start"]), float(fault["jam_onset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{result.file}: fault label {dict(fault)} lacks {exc}") from exc
    if jam < start:
        raise InputError(f"{result.file}: fault jam_onset {jam} before precursor_start {start}")
    return kind, start, jam


def scored_span(t: np.ndarray) -> tuple[float, float]:
    """Seconds covered by the steps ``t``: [t[0], t[-1] + typical step)."""
    if t.size == 0:
        return (0.0, 0.0)
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    return (float(t[0]), float(t[-1]) + step)


def running_seconds(result: FileResult) -> float:
    """Seconds the line was running within the scored span (whole span without line states)."""
    t, _ = _check(result)
    lo, hi = scored_span(t)
    if not result.line_states:
        return hi - lo
    total = 0.0
    for s in result.line_states:
        if s.get("state") == "running":
            total += max(0.0, min(hi, float(s["end"])) - max(lo, float(s["start"])))
    return total


def _stop_after(result: FileResult, jam: float) -> float:
    """When the line stopped for the jam at ``jam``: the start of the first not-running line
    state from then on (``jam`` itself without line states: no late span)."""
    stops = [
        float(s["start"])
        for s in result.line_states
        if s.get("state") != "running" and float(s["start"]) >= jam - TIME_EPS
    ]
    return min(stops, default=jam)


def score_file(
    result: FileResult,
) -> tuple[list[FaultOutcome], list[tuple[str, float]], list[tuple[str, float]]]:
    """Outcomes of the file's faults, the (file, time) of each false-alarm onset, and of those
    the late ones (after a jam formed, before the line stopped for it)."""
    t, alarm = _check(result)
    onset_t = t[alarm_onsets(alarm, result.carried)]
    windows = [_window(result, f) for f in result.faults]
    outcomes = []
    for kind, start, jam in windows:
        inside = onset_t[(onset_t >= start - TIME_EPS) & (onset_t <= jam + TIME_EPS)]
        onset = float(inside[0]) if inside.size else None
        lead = None if onset is None else max(0.0, jam - onset)
        outcomes.append(FaultOutcome(result.file, kind, start, jam, onset, lead))
    jams = [(jam, _stop_after(result, jam)) for _, _, jam in windows]
    false, late = [], []
    for ot in onset_t:
        if any(start - TIME_EPS <= ot <= jam + TIME_EPS for _, start, jam in windows):
            continue
        false.append((result.file, float(ot)))
        if any(jam < ot <= stop + TIME_EPS for jam, stop in jams):
            late.append((result.file, float(ot)))
    return outcomes, false, late


def type_stats(fault_type: str, outcomes: Sequence[FaultOutcome], conf: float = 0.95) -> TypeStats:
    """Recall (and lead >= 1 s recall) with Wilson intervals and the median lead with its CI."""
    leads = tuple(o.lead for o in outcomes if o.lead is not None)
    n, k = len(outcomes), len(leads)
    k1 = sum(1 for x in leads if x >= 1.0 - TIME_EPS)
    lo, hi, coverage = median_interval(leads, conf)
    return TypeStats(
        fault_type=fault_type,
        n=n,
        detected=k,
        recall=k / n if n else math.nan,
        recall_ci=wilson_interval(k, n, conf),
        detected_lead1=k1,
        recall_lead1=k1 / n if n else math.nan,
        recall_lead1_ci=wilson_interval(k1, n, conf),
        median_lead=float(np.median(leads)) if leads else math.nan,
        median_lead_ci=(lo, hi),
        median_lead_ci_coverage=coverage,
        leads=leads,
    )


def evaluate_files(
    results: Sequence[FileResult], shift_hours: float = 8.0, conf: float = 0.95
) -> Summary:
    """Score every file and pool: recall and leads per fault type and overall, false alarms."""
    if shift_hours <= 0:
        raise InputError(f"shift_hours must be > 0, got {shift_hours}")
    outcomes: list[FaultOutcome] = []
    false: list[tuple[str, float]] = []
    late: list[tuple[str, float]] = []
    seconds = 0.0
    for result in results:
        o, f, k = score_file(result)
        outcomes += o
        false += f
        late += k
        seconds += running_seconds(result)
    types = list(FAULT_TYPES) + sorted({o.fault_type for o in outcomes} - set(FAULT_TYPES))
    by_type = {k: type_stats(k, [o for o in outcomes if o.fault_type == k], conf) for k in types}
    hours = seconds / 3600.0
    lo, hi = poisson_interval(len(false), conf)
    scale = shift_hours / hours if hours > 0 else math.nan
    return Summary(
        by_type=by_type,
        overall=type_stats(OVERALL, outcomes, conf),
        false_alarms=len(false),
        running_hours=hours,
        shift_hours=shift_hours,
        false_alarms_per_shift=len(false) * scale,
        false_alarms_per_shift_ci=(lo * scale, hi * scale),
        outcomes=tuple(outcomes),
        false_alarm_onsets=tuple(false),
        late_onsets=tuple(late),
    )


def _fmt_ci(value: float, ci: tuple[float, float], digits: int = 2, unit: str = "") -> str:
    if not math.isfinite(value):
        return "–"
    lo, hi = ci
    return f"{value:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _row(method: str, s: TypeStats, fa: str) -> str:
    recall = f"{s.detected}/{s.n} = " + _fmt_ci(s.recall, s.recall_ci) if s.n else "0/0"
    lead1 = f"{s.detected_lead1}/{s.n} = " + _fmt_ci(s.recall_lead1, s.recall_lead1_ci)
    lead1 = lead1 if s.n else "0/0"
    median = _fmt_ci(s.median_lead, s.median_lead_ci, 2, " s")
    return f"| {method} | {s.fault_type} | {s.n} | {recall} | {lead1} | {median} | {fa} |"


def markdown_table(summaries: Mapping[str, Summary]) -> str:
    """Markdown table: one row per method and fault type, plus a pooled row with false alarms."""
    lines = [
        "| method | type | n | recall [95 % CI] | recall lead ≥ 1 s | median lead [95 % CI] "
        "| false alarms / shift [95 % CI] |",
        "|---|---|---:|---|---|---|---|",
    ]
    for method, summary in summaries.items():
        for stats_ in summary.by_type.values():
            lines.append(_row(method, stats_, "–"))
        fa = _fmt_ci(summary.false_alarms_per_shift, summary.false_alarms_per_shift_ci)
        fa = f"{fa} ({summary.false_alarms} in {summary.running_hours:.2f} h"
        late = len(summary.late_onsets)
        fa += f"; {late} of them late, during a jam)" if late else ")"
        lines.append(_row(method, summary.overall, fa))
    return "\n".join(lines) + "\n"
