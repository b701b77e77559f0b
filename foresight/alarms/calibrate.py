"""Alarm thresholds for a target false-alarm rate, from normal footage only (no labelled faults).

Calibration footage is short (minutes to hours) while the target is rare (e.g. 0.5 per 8 h
shift), so the alarm level is extrapolated from the upper tail (peaks over threshold):

1. *alarmable* series: the running minimum of the score over the on-delay window, i.e. the level
   the score stayed at/above for ``on_delay_s`` (causal, per series). Steps while the line is
   not running and, after it resumes, until it has settled (the score below the ``settled``
   band for ``settle_s``, at most ``settle_max_s``) are excluded, as the engine ignores them; a
   NaN score (occluded, not scored) is not alarmable, and the on-delay restarts after it. The
   ``settled`` band comes from two passes: the first settles restarts in a tight band (the
   median of the running scores plus 2.33 robust sigmas, MAD), which restart transients cannot
   widen; its fitted ``watch`` level is the band of the second and final fit. The engine then
   settles a restart once the score has stayed below the level that would put it on watch,
   not below the calibration footage's own 99th percentile: a line that runs a little
   differently from its calibration footage (measured: running scores with a median of 3.9
   where the calibration's was 1.2) never settled in the tight band in 95 of 120 one-minute
   clips, each a cold start, so the monitor was blind in all of them. Not a fixed point, as a
   band fed by the levels it sets can ratchet itself up (measured on an earlier model: the
   alarm level rose from 21 to 76).
2. for levels ``u`` on a fine grid over the tail, exceedances of ``u`` closer than the engine's
   dead time (``off_delay_s + recover_ramp_s + realarm_s``) merge into one episode; ``N(u)``
   episodes in ``hours`` of footage give the rate ``r(u) = N(u) / hours``.
3. above a threshold ``u0`` (the lowest level where episodes are sparse: at most a ceiling, at
   least ``MIN_EPISODES``), episode peaks are taken as exponential (GPD shape 0): the rate is
   ``r(u) = N(u0) / hours * exp(-(u - u0) / sigma)`` with ``sigma`` the mean excess of the peaks
   (maximum likelihood) raised to its ``SCALE_CONFIDENCE`` upper bound, and solved for the
   target rate. When the footage holds at least ``MIN_EPISODES`` expected episodes at the
   target, the empirical level is also taken and the higher of the two wins. ``margin`` then
   scales the distance above the baseline (the median score).
4. ``watch`` is the fitted level for ``watch_factor`` times the target rate (at most ``alarm``);
   ``clear = alarm - deadband * (alarm - baseline)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from foresight.alarms.config import AlarmConfig
from foresight.alarms.engine import Thresholds, count_alarms, settle_max
from foresight.errors import InputError
from foresight.residuals.tracker import MAD_TO_SIGMA

#: least running normal footage for any calibration (below the episode fit's minimum, a
#: conservative per-step tail is used)
MIN_SHORT_FOOTAGE_S = 10.0
#: fewest episodes over a level for it to enter the tail fit
MIN_EPISODES = 5
#: fit only levels whose mean spacing of episodes is at least this many dead times
SPARSE_FACTOR = 10.0
#: one-sided confidence of the upper bound taken for the tail scale
SCALE_CONFIDENCE = 0.75
#: tail-fit levels, log-spaced in exceedance probability from 1/2 down to 1/n
GRID_POINTS = 600
_EPS = 1e-6  # as the engine's tolerance on elapsed times
#: the settled band: median + CALM_Z robust sigmas of running scores (normal 99th percentile)
CALM_Z = 2.33

log = logging.getLogger(__name__)

Series = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Prepared:
    """One calibration series: raw scores, alarmable level and times of the usable steps."""

    times: np.ndarray  # times of all steps
    alarmable: np.ndarray  # running min over the on-delay window; -inf where not alarmable
    scores: np.ndarray  # finite scores of usable steps (for the baseline)
    seconds: float  # usable running time


@dataclass(frozen=True)
class _Tail:
    """Exponential tail fit ``log r = a - u / sigma`` (r per hour)."""

    a: float
    sigma: float
    points: int

    def level(self, rate: float) -> float:
        """Score level the fit crosses at ``rate`` per hour."""
        return self.sigma * (self.a - math.log(rate))

    def rate(self, level: float) -> float:
        """Fitted rate per hour at ``level``."""
        return math.exp(self.a - level / self.sigma)


def dead_time_s(cfg: AlarmConfig) -> float:
    """Exceedances closer than this merge into one alarm episode."""
    return cfg.off_delay_s + cfg.recover_ramp_s + cfg.realarm_s


def min_footage_s(cfg: AlarmConfig) -> float:
    """Least running normal footage calibration accepts, seconds."""
    # room for MIN_EPISODES episodes spaced SPARSE_FACTOR dead times apart: the least the
    # peaks-over-threshold fit can use
    return max(600.0, SPARSE_FACTOR * MIN_EPISODES * dead_time_s(cfg))


def calibrate_thresholds(
    cfg: AlarmConfig, series: Sequence[Series]
) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds giving ``cfg.false_alarms_per_shift`` on normal footage, and a report.

    ``series`` holds ``(times_s, scores)`` or ``(times_s, scores, running)`` per recording.
    """
    calm = _calm_band(cfg, series)
    thr, report = _calibrate(cfg, series, calm, warn=not math.isfinite(calm))
    if math.isfinite(calm):
        # Second and last pass: restarts settle below the first pass's watch level, and the
        # thresholds are refitted with that rule. Two passes, not a fixed point: a band taken
        # from the levels it feeds could ratchet itself up.
        first_watch = thr.watch
        thr, report = _calibrate(cfg, series, first_watch)
        band = min(first_watch, thr.alarm)
        thr = replace(thr, settled=band)
        report["settled_band"] = band
        report["calm_band"] = calm
    return thr, report


def _calm_band(cfg: AlarmConfig, series: Sequence[Series]) -> float:
    """The normal running band a restart settles into (inf when nothing restarts): the median
    of the running scores plus 2.33 robust sigmas (MAD), the 99th percentile of a normal
    distribution. Robust statistics, because restart transients can be a large share of short
    calibration clips that each start cold (a plain 99th percentile would include them)."""
    vals, restarts = [], 0
    for item in series:
        t, s = np.asarray(item[0], np.float64), np.asarray(item[1], np.float64)
        r = np.ones(t.shape, bool) if len(item) < 3 else np.asarray(item[2], bool)
        if t.shape != s.shape or t.shape != r.shape or t.size < 2:
            continue  # _prepare reports malformed series
        restarts += int(np.count_nonzero(r[1:] & ~r[:-1]))
        vals.append(s[r & np.isfinite(s)])
    x = np.concatenate(vals) if vals else np.zeros(0)
    if restarts == 0 or x.size == 0:
        return math.inf
    med = float(np.median(x))
    return med + CALM_Z * MAD_TO_SIGMA * float(np.median(np.abs(x - med)))


def _calibrate(
    cfg: AlarmConfig, series: Sequence[Series], band: float, warn: bool = True
) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds and report from the series, restarts settling on ``band``."""
    prepared = [_prepare(cfg, *s, band=band) for s in series]
    seconds = sum(p.seconds for p in prepared)
    if seconds < MIN_SHORT_FOOTAGE_S:
        raise InputError(
            f"calibration needs at least {MIN_SHORT_FOOTAGE_S:.0f} s of running normal footage "
            f"({min_footage_s(cfg):.0f} s for the episode fit), got {seconds:.0f} s"
        )
    raw = np.concatenate([p.scores for p in prepared])
    # The level the engine compares is held for the on-delay: its median is the baseline (the
    # raw median sits higher when the score has short periodic spikes).
    held = np.concatenate([p.alarmable[np.isfinite(p.alarmable)] for p in prepared])
    baseline = float(np.median(held)) if held.size else float(np.median(raw))
    spread = float(np.ptp(raw))
    if spread <= 1e-9 * max(1.0, abs(baseline)):
        raise InputError(f"calibration scores are constant ({baseline:.6g}); cannot fit a tail")
    hours = seconds / 3600.0
    grid = _grid(np.concatenate([p.alarmable for p in prepared]))
    gap = dead_time_s(cfg)
    counts = np.array([sum(_episodes(p, u, gap) for p in prepared) for u in grid])
    ceiling = max(3.0 * MIN_EPISODES, seconds / (SPARSE_FACTOR * gap))
    target = cfg.false_alarms_per_shift / cfg.shift_hours
    try:
        if seconds < min_footage_s(cfg):
            raise InputError("short footage")
        tail = _fit(prepared, grid, counts, hours, ceiling, gap)
        level, method = _level(tail, grid, counts, hours, target)
    except InputError:
        tail = _step_tail(prepared, hours)
        level, method = tail.level(target), "short-footage step tail (conservative)"
        # Never below what the short footage itself reached: that would alarm on normal at once.
        seen = np.concatenate([p.alarmable[np.isfinite(p.alarmable)] for p in prepared])
        level = max(level, float(seen.max()) if seen.size else level)
        if warn:
            log.warning(
                "only %.0f s of normal footage for calibration: thresholds come from a "
                "conservative per-step tail fit; give at least %.0f s for an episode-based one",
                seconds,
                min_footage_s(cfg),
            )
    alarm = baseline + cfg.margin * max(level - baseline, 0.0)
    watch_level, _ = _level(tail, grid, counts, hours, target * cfg.watch_factor)
    watch = min(max(watch_level, baseline), alarm)
    clear = alarm - cfg.deadband * (alarm - baseline)
    thr = Thresholds(watch=watch, alarm=alarm, clear=clear, baseline=baseline)
    observed = sum(_episodes(p, alarm, gap) for p in prepared)
    report = {
        "hours": hours,
        "method": method,
        "target_per_shift": cfg.false_alarms_per_shift,
        "empirical_per_shift": observed / hours * cfg.shift_hours,
        "sigma": tail.sigma,
        "tail_points": tail.points,
        "predicted_per_shift": tail.rate(alarm) * cfg.shift_hours,
    }
    return thr, report


def false_alarm_rate(
    cfg: AlarmConfig, thr: Thresholds, series: Sequence[Series]
) -> tuple[int, float, float]:
    """Run the real engine over normal footage: (slow-down starts, running hours, per shift)."""
    count, seconds = 0, 0.0
    for item in series:
        times, scores = item[0], item[1]
        running = item[2] if len(item) > 2 else None
        count += count_alarms(cfg, thr, times, scores, running=running)
        seconds += _prepare(cfg, *item).seconds
    hours = seconds / 3600.0
    return count, hours, (count / hours * cfg.shift_hours if hours > 0 else math.nan)


def _prepare(
    cfg: AlarmConfig, times: Any, scores: Any, running: Any = None, band: float = math.inf
) -> _Prepared:
    """Usable steps and the alarmable level of one series (restarts settle on ``band``)."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    r = np.ones(t.shape, bool) if running is None else np.asarray(running, dtype=bool)
    if t.ndim != 1 or t.shape != s.shape or t.shape != r.shape:
        raise InputError(
            f"calibration series need equal 1-D lengths, got times {t.shape}, "
            f"scores {s.shape}, running {r.shape}"
        )
    if t.size < 2:
        return _Prepared(t, np.full(t.shape, -np.inf), s[:0], 0.0)
    if np.any(np.diff(t) <= 0):
        raise InputError("calibration series times must increase")
    dt = float(np.median(np.diff(t)))
    usable = r & ~settling(cfg, t, s, r, band)
    usable &= np.isfinite(s)  # no score (occluded, warming up): no alarm; the engine's on-delay
    filled = np.where(usable, s, np.nan)  # restarts after such a gap, so it is not bridged
    level = np.where(usable, filled, -np.inf)
    k = int(math.floor(cfg.on_delay_s / dt + 1e-6)) + 1
    alarmable = np.full(t.shape, -np.inf)
    if t.size >= k:
        alarmable[k - 1 :] = sliding_window_view(level, k).min(axis=1)
    return _Prepared(t, alarmable, filled[usable], float(np.count_nonzero(usable)) * dt)


def settling(
    cfg: AlarmConfig, t: np.ndarray, s: np.ndarray, r: np.ndarray, band: float
) -> np.ndarray:
    """Steps the engine ignores while a restart settles (its rule, replayed over a series):
    from each resume until the score has stayed below ``band`` for ``settle_s`` (NaN holds the
    timer), at most ``settle_max_s`` after the last stopped step."""
    out = np.zeros(t.shape, bool)
    ends = np.r_[np.flatnonzero(~r), t.size]
    for start in np.flatnonzero(r[1:] & ~r[:-1]) + 1:
        stop = int(ends[np.searchsorted(ends, start)])
        latest = t[start - 1] + settle_max(cfg)
        calm, k = None, start
        while k < stop and t[k] < latest - _EPS:
            if math.isfinite(s[k]):
                calm = (t[k] if calm is None else calm) if s[k] < band else None
            k += 1
            if calm is not None and t[k - 1] - calm >= cfg.settle_s - _EPS:
                break
        out[start:k] = True
    return out


def _grid(alarmable: np.ndarray) -> np.ndarray:
    """Levels from the median to the maximum, dense in the tail."""
    finite = alarmable[np.isfinite(alarmable)]
    if finite.size == 0:
        raise InputError("calibration footage has no stretch as long as the on-delay")
    exceed = np.logspace(math.log10(0.5), -math.log10(finite.size), GRID_POINTS)
    return np.unique(np.quantile(finite, 1.0 - exceed))


def _episodes(p: _Prepared, u: float, gap: float) -> int:
    """Episodes of the alarmable level at/above ``u``; exceedances closer than ``gap`` merge."""
    at = p.times[p.alarmable >= u]
    if at.size == 0:
        return 0
    return 1 + int(np.count_nonzero(np.diff(at) > gap))


def _peaks(p: _Prepared, u: float, gap: float) -> np.ndarray:
    """Peak alarmable level of each episode at/above ``u`` (episodes as in ``_episodes``)."""
    idx = np.flatnonzero(p.alarmable >= u)
    if idx.size == 0:
        return np.zeros(0)
    breaks = np.flatnonzero(np.diff(p.times[idx]) > gap) + 1
    return np.array([p.alarmable[g].max() for g in np.split(idx, breaks)])


def _fit(
    prepared: list[_Prepared],
    grid: np.ndarray,
    counts: np.ndarray,
    hours: float,
    ceiling: float,
    gap: float,
) -> _Tail:
    """Exponential tail of episode peaks over a threshold (peaks over threshold, GPD shape 0).

    The threshold ``u0`` is the lowest grid level above the merging region whose episodes stay
    sparse (at most ``ceiling``); the scale is the maximum-likelihood mean excess of the peaks
    over ``u0``, raised to its one-sided ``SCALE_CONFIDENCE`` upper bound (chi-squared with 2N
    degrees of freedom), because a few episodes give a noisy scale and too low a level is the
    costly error.
    """
    from scipy.stats import chi2

    above_peak = np.arange(counts.size) > np.argmax(counts)  # below it, episodes merge
    sel = np.flatnonzero(above_peak & (counts >= MIN_EPISODES) & (counts <= ceiling))
    if sel.size == 0:
        raise InputError(
            f"calibration tail too thin: no level with {MIN_EPISODES}..{ceiling:.0f} alarm "
            "episodes; need longer normal footage"
        )
    u0 = float(grid[sel[0]])
    peaks = np.concatenate([_peaks(p, u0, gap) for p in prepared])
    n = peaks.size
    mean_excess = float(np.mean(peaks - u0))
    if not mean_excess > 0:
        raise InputError("calibration tail does not decay; scores look non-stationary")
    sigma = mean_excess * 2 * n / float(chi2.ppf(1.0 - SCALE_CONFIDENCE, 2 * n))
    return _Tail(a=u0 / sigma + math.log(n / hours), sigma=sigma, points=int(n))


def _step_tail(prepared: list[_Prepared], hours: float) -> _Tail:
    """Exponential tail of per-step exceedances, each step counted as its own episode.

    Counting every step above a level as a separate alarm over-counts (real alarms span several
    steps), so the level it gives for a target rate is higher than the episode fit's: the safe
    side when there is too little footage to count episodes.
    """
    vals = np.concatenate([p.alarmable[np.isfinite(p.alarmable)] for p in prepared])
    vals = np.sort(vals)[::-1]
    top = max(10, vals.size // 10)
    if vals.size < 20 or np.ptp(vals[:top]) <= 0:
        raise InputError(f"calibration has too few scored steps ({vals.size}); need more footage")
    u = vals[:top]
    rate = np.arange(1, top + 1) / hours  # steps per hour at or above each level
    slope, intercept = np.polyfit(u, np.log(rate), 1)
    if not slope < 0:
        raise InputError("calibration tail does not decay; scores look non-stationary")
    return _Tail(a=float(intercept), sigma=float(-1.0 / slope), points=int(top))


def _level(
    tail: _Tail, grid: np.ndarray, counts: np.ndarray, hours: float, rate: float
) -> tuple[float, str]:
    """Level for ``rate`` per hour: the fit, or the empirical level where the data suffice."""
    fitted = tail.level(rate)
    if rate * hours < MIN_EPISODES:
        return fitted, "fit"
    over = np.flatnonzero(counts > rate * hours)
    empirical = float(grid[min(over[-1] + 1, grid.size - 1)]) if over.size else float(grid[0])
    if empirical > fitted:
        return empirical, "empirical"
    return fitted, "fit"
