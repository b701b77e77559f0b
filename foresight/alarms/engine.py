"""Alarm engine: a pure state machine from anomaly score to feeder speed-limit commands.

Operator-facing contract (times are seconds of the caller's monotonic clock; one ``Tick`` per
model step; ``step`` has no I/O and no clock):

* Thresholds ``watch <= alarm`` and ``clear <= alarm`` come from calibration
  (``foresight.alarms.calibrate``) and ship with the model.
* **normal / watch**: on each scored step the mode is ``watch`` while ``score >= watch``, else
  ``normal``. Nothing is commanded.
* **slow-down start**: once the score has been ``>= alarm`` on every scored step for at least
  ``on_delay_s`` (on-delay), the speed limit drops to ``slowdown_pct`` % of the operator setpoint
  (reason ``"slowdown"``) and the mode is ``slowdown``. Not if a slow-down ended less than
  ``realarm_s`` ago, nor if ``max_slowdowns_per_hour`` slow-downs started in the last rolling
  hour: the mode is then ``watch`` with ``suppressed`` = ``"realarm"`` or ``"cap"`` (latched
  until the score falls below ``clear``; ``n_suppressed`` counts each withheld alarm once). If
  the score is still above alarm when the block lifts, the slow-down starts then.
* **slowdown** lasts at least ``min_slowdown_s`` and ends once the score has been ``< clear`` on
  every scored step for ``off_delay_s`` (off-delay); ``clear`` lies a deadband below ``alarm``.
* **slow-down timeout**: a slow-down held for ``max_slowdown_s`` (counted from entering
  ``slowdown``) goes to ``recovering`` whatever the score, and that ramp runs to 100 without
  re-entering ``slowdown``; at full speed the score decides again (a new slow-down after
  ``realarm_s``, counted in the hourly cap). A model trained at full speed has not seen the line
  at the reduced speed, so its score need never clear there: measured on the drift-to-swap
  test's model, the normal score was 3.1 at full speed, 10.3 at an 85 % limit and 14.3 at
  70 %, so a false alarm held the line at 70 % for as long as the test watched.
* **recovering**: the limit ramps linearly back to 100 % over ``recover_ramp_s``. A command goes
  out whenever the limit has risen by at least one percentage point (``"ramp"``, rounded to
  0.1) and at 100 (``"restore"``), which ends the slow-down; the mode is then normal/watch. Score
  ``>= alarm`` for ``on_delay_s`` during the ramp returns to ``slowdown`` at once: it is the same
  slow-down, so it neither waits for the re-alarm time nor counts again towards the hourly cap.
* **line not running** (stopped, jammed, changeover): any limit is released to 100 at once
  (``"line_stopped"``) and the mode is normal. When it runs again, scores are ignored while the
  line *settles*: until the score has stayed below ``Thresholds.settle_level`` (calibration's
  ``settled`` band, its first-pass watch level; ``watch`` if unset) for ``settle_s`` (the
  ramp-up after a restart is hard to predict, and how long it takes differs from a short jam
  stop to a product changeover), at most ``settle_max_s`` after the last non-running step. A
  NaN score neither starts nor breaks the calm stretch. This check comes before the health check.
* **model unhealthy**: mode ``health_fault``, any limit released to 100 (``"health"``), never a
  slow-down. When health returns, scores are ignored for ``settle_s``, then normal.
* A slow-down *ends* whenever the limit returns to 100, for whatever reason; the re-alarm time
  counts from then.
* **NaN score** (no score this step) carries no information: mode, limit and the delay timers
  hold (a timer started before the gap keeps its start), but no score-driven transition happens
  on that step. The recovering ramp is driven by time and continues. A long gap in the score is
  a health problem: the caller should then pass ``healthy=False``.
* A ``Command`` is emitted only when the commanded limit changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from foresight.alarms.config import AlarmConfig
from foresight.errors import InputError

#: the modes an ``AlarmState`` can be in
MODES: tuple[str, ...] = ("normal", "watch", "slowdown", "recovering", "health_fault")
#: why a ``Command`` was sent
REASONS: tuple[str, ...] = ("slowdown", "ramp", "restore", "health", "line_stopped")
HOUR_S = 3600.0
_EPS = 1e-6  # tolerance on elapsed-time comparisons (10 Hz clocks are not exact in binary)
_FULL = 100.0


@dataclass(frozen=True)
class Thresholds:
    """Calibrated score levels (``watch``, ``clear`` <= ``alarm``), the median normal score and
    the band a restart settles into (``settled``, at most ``alarm``; ``watch`` if unset)."""

    watch: float
    alarm: float
    clear: float
    baseline: float
    settled: float | None = None

    def __post_init__(self) -> None:
        values = (self.watch, self.alarm, self.clear, self.baseline)
        if self.settled is not None:
            values += (self.settled,)
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"alarm thresholds must be finite, got {self.to_dict()}")
        if max(self.clear, self.watch, self.settle_level) > self.alarm:
            raise InputError(
                f"alarm thresholds need clear, watch, settled <= alarm, got {self.to_dict()}"
            )

    @property
    def settle_level(self) -> float:
        """After a restart, scores count once they have stayed below this."""
        return self.watch if self.settled is None else self.settled

    def to_dict(self) -> dict[str, float]:
        """Plain floats, for saving next to the model weights."""
        out = {
            "watch": float(self.watch),
            "alarm": float(self.alarm),
            "clear": float(self.clear),
            "baseline": float(self.baseline),
        }
        if self.settled is not None:
            out["settled"] = float(self.settled)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        """Inverse of ``to_dict``; a missing key raises ``InputError``."""
        keys = ("watch", "alarm", "clear", "baseline")
        missing = [k for k in keys if k not in data]
        if missing:
            raise InputError(f"alarm thresholds lack {', '.join(missing)}")
        settled = data.get("settled")
        return cls(
            **{k: float(data[k]) for k in keys},
            settled=None if settled is None else float(settled),
        )


class Tick(NamedTuple):
    """One model step: time (s, monotonic), score (NaN = none), model health, line running."""

    now: float
    score: float
    healthy: bool = True
    running: bool = True


@dataclass(frozen=True)
class Command:
    """Feeder speed limit, % of the operator setpoint, and why it changed."""

    speed_limit_pct: float
    reason: str


@dataclass(frozen=True)
class AlarmState:
    """Everything the engine carries from one step to the next."""

    mode: str = "normal"
    since: float = -math.inf  # when the current mode was entered
    above_since: float | None = None  # first step of the current run at/above alarm
    below_since: float | None = None  # first step of the current run below clear (slowdown)
    last_end: float = -math.inf  # when the last slow-down ended (limit back at 100)
    starts: tuple[float, ...] = ()  # slow-down start times (pruned to the last hour on use)
    suspended_until: float = -math.inf  # scores ignored before this time
    settling: bool = False  # after a restart: the suspension ends early once the score is calm
    calm_since: float | None = None  # first step of the current calm run while settling
    limit: float = _FULL  # speed limit last commanded, %
    suppressed: str = ""  # "", "realarm" or "cap": an alarm is being withheld
    n_suppressed: int = 0  # withheld alarms so far
    timed_out: bool = False  # this ramp follows a slow-down timeout: it runs to 100

    @property
    def alarm(self) -> bool:
        """True while a slow-down is commanded (mode ``slowdown``)."""
        return self.mode == "slowdown"


def initial_state() -> AlarmState:
    """Normal, nothing commanded, no history."""
    return AlarmState()


def step(
    cfg: AlarmConfig, thr: Thresholds, state: AlarmState, tick: Tick
) -> tuple[AlarmState, tuple[Command, ...]]:
    """Advance one model step; return the new state and the commands to send (usually none)."""
    now = float(tick.now)
    if not tick.running:
        new, cmds = _release(state, now, "line_stopped", "normal", now + settle_max(cfg))
        return replace(new, settling=True, calm_since=None), cmds
    if not tick.healthy:
        return _release(state, now, "health", "health_fault", state.suspended_until)
    if state.mode == "health_fault":
        return _rest(state, now, now + cfg.settle_s), ()
    score = float(tick.score)
    if now < state.suspended_until - _EPS:
        return _settle(cfg, thr, state, now, score), ()
    if state.mode == "slowdown" and _timed_out(cfg, state, now):
        state = replace(
            state, mode="recovering", since=now, above_since=None, below_since=None,
            timed_out=True,
        )  # fmt: skip
        return _ramp(cfg, thr, state, now, score)
    if math.isnan(score):  # no evidence (occluded, not scored)
        if state.mode == "recovering":  # timers hold: a slow-down episode is still open
            return _ramp(cfg, thr, state, now, score)
        if state.mode == "slowdown":
            return state, ()
        return replace(state, above_since=None), ()  # a new alarm needs a full on-delay
    above = _timer(state.above_since, now) if score >= thr.alarm else None
    below = _timer(state.below_since, now) if score < thr.clear else None
    on = above is not None and now - above >= cfg.on_delay_s - _EPS
    if state.mode == "slowdown":
        off = below is not None and now - below >= cfg.off_delay_s - _EPS
        state = replace(state, above_since=above, below_since=below)
        if off and now - state.since >= cfg.min_slowdown_s - _EPS:
            state = replace(state, mode="recovering", since=now, below_since=None)
            return _ramp(cfg, thr, state, now, score)
        return state, ()
    state = replace(state, above_since=above, below_since=None)
    if state.mode == "recovering":
        if on and not state.timed_out:
            return _slow(cfg, state, now, state.starts)
        return _ramp(cfg, thr, state, now, score)
    return _quiet(cfg, thr, state, now, score, on)


def _timed_out(cfg: AlarmConfig, state: AlarmState, now: float) -> bool:
    limit = cfg.max_slowdown_s
    return limit is not None and now - state.since >= limit - _EPS


def _timer(start: float | None, now: float) -> float:
    return now if start is None else start


def _with_mode(state: AlarmState, mode: str, now: float, **changes: Any) -> AlarmState:
    since = state.since if state.mode == mode else now
    return replace(state, mode=mode, since=since, **changes)


def _release(
    state: AlarmState, now: float, reason: str, mode: str, suspended_until: float
) -> tuple[AlarmState, tuple[Command, ...]]:
    """Drop any limit to 100 and forget the score history (line stopped or model unhealthy)."""
    cmds: tuple[Command, ...] = ()
    last_end = state.last_end
    if state.limit < _FULL:
        cmds, last_end = (Command(_FULL, reason),), now
    new = _with_mode(
        state,
        mode,
        now,
        above_since=None,
        below_since=None,
        last_end=last_end,
        suspended_until=suspended_until,
        limit=_FULL,
        suppressed="",
        timed_out=False,
    )
    return new, cmds


def _rest(
    state: AlarmState,
    now: float,
    suspended_until: float,
    settling: bool = False,
    calm_since: float | None = None,
) -> AlarmState:
    """Normal with no timers, scores ignored until ``suspended_until``."""
    return _with_mode(
        state,
        "normal",
        now,
        above_since=None,
        below_since=None,
        suspended_until=suspended_until,
        settling=settling,
        calm_since=calm_since,
        suppressed="",
    )


def settle_max(cfg: AlarmConfig) -> float:
    """Longest suspension after a restart (never shorter than the calm time itself)."""
    return max(cfg.settle_s, cfg.settle_max_s)


def _settle(
    cfg: AlarmConfig, thr: Thresholds, state: AlarmState, now: float, score: float
) -> AlarmState:
    """Suspended: after a restart, end the suspension once the score has been calm (below
    ``thr.settle_level``) for ``settle_s``; a NaN score holds the calm timer."""
    if not state.settling:
        return _rest(state, now, state.suspended_until)
    calm = state.calm_since
    if not math.isnan(score):
        calm = _timer(calm, now) if score < thr.settle_level else None
    if calm is not None and now - calm >= cfg.settle_s - _EPS:
        return _rest(state, now, now)  # settled: scores count from the next step
    return _rest(state, now, state.suspended_until, settling=True, calm_since=calm)


def _slow(
    cfg: AlarmConfig, state: AlarmState, now: float, starts: tuple[float, ...]
) -> tuple[AlarmState, tuple[Command, ...]]:
    """Enter ``slowdown`` (new or re-entered from ``recovering``)."""
    cmds = (Command(cfg.slowdown_pct, "slowdown"),) if cfg.slowdown_pct != state.limit else ()
    new = replace(
        state, mode="slowdown", since=now, starts=starts, limit=cfg.slowdown_pct, suppressed=""
    )
    return new, cmds


def _ramp(
    cfg: AlarmConfig, thr: Thresholds, state: AlarmState, now: float, score: float
) -> tuple[AlarmState, tuple[Command, ...]]:
    """Recovering: raise the limit along the ramp; at 100 the slow-down ends."""
    frac = 1.0 if cfg.recover_ramp_s <= 0 else (now - state.since) / cfg.recover_ramp_s
    target = cfg.slowdown_pct + (_FULL - cfg.slowdown_pct) * frac
    if target >= _FULL - _EPS:
        cmds = (Command(_FULL, "restore"),) if state.limit < _FULL else ()
        mode = "watch" if score >= thr.watch else "normal"  # NaN: normal
        new = replace(state, mode=mode, since=now, limit=_FULL, last_end=now, timed_out=False)
        return new, cmds
    target = round(target, 1)
    if target - state.limit >= 1.0 - _EPS:
        return replace(state, limit=target), (Command(target, "ramp"),)
    return state, ()


def _blocked(cfg: AlarmConfig, state: AlarmState, now: float) -> tuple[str, tuple[float, ...]]:
    """Why a new slow-down may not start now ("" if it may), and the starts in the last hour."""
    recent = tuple(t for t in state.starts if now - t < HOUR_S)
    if now - state.last_end < cfg.realarm_s - _EPS:
        return "realarm", recent
    if len(recent) >= cfg.max_slowdowns_per_hour:
        return "cap", recent
    return "", recent


def _quiet(
    cfg: AlarmConfig, thr: Thresholds, state: AlarmState, now: float, score: float, on: bool
) -> tuple[AlarmState, tuple[Command, ...]]:
    """Normal or watch: start a slow-down when the on-delay is met and nothing blocks it."""
    if on:
        why, recent = _blocked(cfg, state, now)
        if not why:
            return _slow(cfg, state, now, (*recent, now))
        fresh = 0 if state.suppressed else 1
        new = _with_mode(
            state,
            "watch",
            now,
            starts=recent,
            suppressed=why,
            n_suppressed=state.n_suppressed + fresh,
        )
        return new, ()
    suppressed = state.suppressed if score >= thr.clear else ""
    mode = "watch" if score >= thr.watch or suppressed else "normal"
    return _with_mode(state, mode, now, suppressed=suppressed), ()


def run_engine(
    cfg: AlarmConfig,
    thr: Thresholds,
    times: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    healthy: Sequence[bool] | np.ndarray | None = None,
    running: Sequence[bool] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, Command]]]:
    """Run ``step`` over a recorded series: (mode per step, alarm per step, timed commands).

    Stretches where nothing can happen (normal/watch, score finite and below alarm, line running,
    model healthy, not suspended) are filled in vectorised; the result equals stepping every tick.
    """
    t, s, h, r = _arrays(times, scores, healthy, running)
    n = t.size
    modes = np.empty(n, dtype="<U12")
    easy = r & h & np.isfinite(s) & (s < thr.alarm)
    hard = np.flatnonzero(~easy)
    state, events = initial_state(), []
    i = 0
    while i < n:
        if easy[i] and _is_quiet(state, t[i]):
            k = np.searchsorted(hard, i)
            j = int(hard[k]) if k < hard.size else n
            state = _skip(thr, state, t[i:j], s[i:j], modes[i:j])
            i = j
            continue
        state, cmds = step(cfg, thr, state, Tick(float(t[i]), float(s[i]), bool(h[i]), bool(r[i])))
        modes[i] = state.mode
        events.extend((float(t[i]), c) for c in cmds)
        i += 1
    return modes, modes == "slowdown", events


def count_alarms(
    cfg: AlarmConfig,
    thr: Thresholds,
    times: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    running: Sequence[bool] | np.ndarray | None = None,
) -> int:
    """Number of slow-down starts (re-entries from ``recovering`` are not new starts)."""
    modes, alarm, _ = run_engine(cfg, thr, times, scores, running=running)
    if modes.size == 0:
        return 0
    active = (modes == "slowdown") | (modes == "recovering")
    return int(alarm[0]) + int(np.count_nonzero(alarm[1:] & ~active[:-1]))


def _arrays(
    times: Any, scores: Any, healthy: Any, running: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    h = np.ones(t.shape, bool) if healthy is None else np.asarray(healthy, dtype=bool)
    r = np.ones(t.shape, bool) if running is None else np.asarray(running, dtype=bool)
    if t.ndim != 1 or not (t.shape == s.shape == h.shape == r.shape):
        raise InputError(
            f"alarm series need equal 1-D lengths, got times {t.shape}, scores {s.shape}, "
            f"healthy {h.shape}, running {r.shape}"
        )
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise InputError("alarm series times must not decrease")
    return t, s, h, r


def _is_quiet(state: AlarmState, now: float) -> bool:
    return (
        state.mode in ("normal", "watch")
        and state.above_since is None
        and not state.suppressed
        and state.limit == _FULL
        and now >= state.suspended_until - _EPS
    )


def _skip(
    thr: Thresholds, state: AlarmState, t: np.ndarray, s: np.ndarray, out: np.ndarray
) -> AlarmState:
    """Quiet stretch: modes follow the watch level; return the state ``step`` would reach."""
    watch = s >= thr.watch
    out[:] = np.where(watch, "watch", "normal")
    prev = np.concatenate(([state.mode == "watch"], watch[:-1]))
    changed = np.flatnonzero(watch != prev)
    if changed.size == 0:
        return state
    return replace(state, mode=str(out[-1]), since=float(t[changed[-1]]))
