"""Alarm engine: exact commands on hand-written tables, hysteresis, limits, calibration accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.signal import lfilter

from foresight.alarms import (
    AlarmConfig,
    Command,
    Thresholds,
    Tick,
    calibrate_thresholds,
    count_alarms,
    false_alarm_rate,
    initial_state,
    run_engine,
    step,
)
from foresight.errors import InputError

NAN = math.nan
THR = Thresholds(watch=2.0, alarm=5.0, clear=3.0, baseline=1.0)
#: short timers so that a whole episode fits in a readable table (ticks every 0.1 s)
FAST = AlarmConfig(
    on_delay_s=0.3,
    min_slowdown_s=1.0,
    off_delay_s=0.5,
    recover_ramp_s=0.5,
    realarm_s=2.0,
    settle_s=0.5,
)


def slow(pct: float = 70.0) -> tuple[Command, ...]:
    return (Command(pct, "slowdown"),)


def ramp(pct: float) -> tuple[Command, ...]:
    return (Command(pct, "ramp"),)


RESTORE = (Command(100.0, "restore"),)

# (time, score, expected mode, expected commands); healthy and running throughout
DWELL_TABLE = [
    (0.0, 1.0, "normal", ()),
    (0.1, 2.5, "watch", ()),
    (0.2, 5.0, "watch", ()),  # on-delay starts
    (0.3, 6.0, "watch", ()),
    (0.4, 6.0, "watch", ()),
    (0.5, 6.0, "slowdown", slow()),  # 0.3 s at/above alarm
    (0.6, 1.0, "slowdown", ()),  # off-delay starts
    (1.1, 1.0, "slowdown", ()),  # off-delay met, minimum dwell (until 1.5) not
    (1.4, 1.0, "slowdown", ()),
    (1.5, 1.0, "recovering", ()),  # ramp starts at 70 %
    (1.6, 1.0, "recovering", ramp(76.0)),
    (1.7, 1.0, "recovering", ramp(82.0)),
    (1.8, 2.5, "recovering", ramp(88.0)),
    (1.9, 1.0, "recovering", ramp(94.0)),
    (2.0, 2.5, "watch", RESTORE),  # ramp done: the slow-down ends
    (2.1, 1.0, "normal", ()),
    (2.2, 6.0, "watch", ()),
    (2.5, 6.0, "watch", ()),  # on-delay met but within realarm_s of 2.0: withheld
    (3.9, 6.0, "watch", ()),
    (4.0, 6.0, "slowdown", slow()),  # re-alarm time over, score still high
]

REENTRY_TABLE = [
    (0.0, 6.0, "watch", ()),
    (0.1, 6.0, "watch", ()),
    (0.2, 6.0, "watch", ()),
    (0.3, 6.0, "slowdown", slow()),
    (0.4, 1.0, "slowdown", ()),
    (0.5, 1.0, "slowdown", ()),
    (0.6, 4.0, "slowdown", ()),  # between clear and alarm: off-delay restarts
    (0.7, 1.0, "slowdown", ()),
    (0.8, 1.0, "slowdown", ()),
    (0.9, NAN, "slowdown", ()),  # no score: timers hold
    (1.0, 1.0, "slowdown", ()),
    (1.1, 1.0, "slowdown", ()),
    (1.2, 1.0, "recovering", ()),  # 0.5 s below clear since 0.7
    (1.3, 6.0, "recovering", ramp(76.0)),  # on-delay starts during the ramp
    (1.4, NAN, "recovering", ramp(82.0)),  # the ramp is driven by time
    (1.5, 6.0, "recovering", ramp(88.0)),
    (1.6, 6.0, "slowdown", slow()),  # back to slow-down: same episode, no re-alarm wait
    (1.7, 1.0, "slowdown", ()),
]

GAP_TABLE = [
    (0.0, 6.0, "watch", ()),
    (0.1, 6.0, "watch", ()),
    (0.2, NAN, "watch", ()),  # no evidence (a hand passed): the on-delay starts afresh
    (0.3, 6.0, "watch", ()),
    (0.4, 6.0, "watch", ()),
    (0.5, 6.0, "watch", ()),
    (0.6, 6.0, "slowdown", slow()),  # 0.3 s of continuous evidence since 0.3
]

# A slow-down whose score never clears (the model has not seen the line at the reduced speed)
TIMEOUT_TABLE = [
    (0.0, 6.0, "watch", ()),
    (0.1, 6.0, "watch", ()),
    (0.2, 6.0, "watch", ()),
    (0.3, 6.0, "slowdown", slow()),
    (1.2, 6.0, "slowdown", ()),
    (1.3, 6.0, "recovering", ()),  # held max_slowdown_s (1.0 s): ramp from 70 %
    (1.4, 6.0, "recovering", ramp(76.0)),  # score above alarm: no re-entry after a timeout
    (1.5, NAN, "recovering", ramp(82.0)),
    (1.6, 6.0, "recovering", ramp(88.0)),
    (1.7, 6.0, "recovering", ramp(94.0)),
    (1.8, 6.0, "watch", RESTORE),
    (1.9, 6.0, "watch", ()),  # within realarm_s of the restore: withheld
    (3.7, 6.0, "watch", ()),
    (3.8, 6.0, "slowdown", slow()),  # at full speed and still high: a new slow-down
    (4.7, 1.0, "slowdown", ()),
]


def drive(cfg: AlarmConfig, rows: list) -> None:
    """Step through ``rows`` and check the mode and commands after every tick."""
    state = initial_state()
    for now, score, mode, cmds in rows:
        state, got = step(cfg, THR, state, Tick(now, score))
        assert (state.mode, got) == (mode, cmds), f"t={now}"
    assert state.alarm == (state.mode == "slowdown")


def test_table_dwell_ramp_restore_realarm():
    drive(FAST.model_copy(update={"min_slowdown_s": 1.0}), DWELL_TABLE)


def test_table_a_gap_in_the_score_restarts_the_on_delay():
    drive(FAST, GAP_TABLE)


def test_table_off_delay_reentry_nan():
    drive(FAST.model_copy(update={"min_slowdown_s": 0.5}), REENTRY_TABLE)


def test_table_a_slowdown_that_never_clears_times_out_to_full_speed():
    cfg = FAST.model_copy(update={"max_slowdown_s": 1.0})
    drive(cfg, TIMEOUT_TABLE)
    times, scores = zip(*[(r[0], r[1]) for r in TIMEOUT_TABLE], strict=True)
    assert count_alarms(cfg, THR, times, scores) == 2
    # without the timeout the same scores hold the first slow-down throughout
    state = initial_state()
    for now, score, *_ in TIMEOUT_TABLE:
        state, _ = step(FAST.model_copy(update={"max_slowdown_s": None}), THR, state,
                        Tick(now, score))  # fmt: skip
        assert now < 0.3 or state.mode == "slowdown"
    with pytest.raises(ValidationError, match="max_slowdown_s"):
        AlarmConfig(min_slowdown_s=40.0, max_slowdown_s=30.0)


def test_table_counts_one_start_for_reentry():
    cfg = FAST.model_copy(update={"min_slowdown_s": 0.5})
    times, scores = zip(*[(r[0], r[1]) for r in REENTRY_TABLE], strict=True)
    assert count_alarms(cfg, THR, times, scores) == 1


def series(seconds: float, hz: float = 10.0) -> np.ndarray:
    return np.arange(round(seconds * hz)) / hz


def test_noisy_score_at_alarm_does_not_chatter():
    cfg = AlarmConfig(max_slowdown_s=None)  # 60 s at alarm: the timeout has its own table
    thr = Thresholds(watch=3.0, alarm=5.0, clear=5.0 - 0.3 * 4.0, baseline=1.0)
    t = series(60.0)
    noisy = 5.0 + 0.3 * np.random.default_rng(3).standard_normal(t.size)
    assert count_alarms(cfg, thr, t, noisy) == 1
    hover = np.where(t < 10.0, thr.alarm + 0.01, thr.alarm - 0.01)  # inside the deadband
    modes, alarm, events = run_engine(cfg, thr, t, hover)
    assert events == [(pytest.approx(0.3), Command(70.0, "slowdown"))]
    assert alarm[3:].all() and set(modes[3:]) == {"slowdown"}


def test_realarm_and_hourly_cap():
    cfg = AlarmConfig()
    t = series(2 * 3600.0)
    spikes = np.where((t % 15.0) < 2.0, 6.0, 1.0)  # a 2 s spike every 15 s for two hours
    thr = Thresholds(watch=3.0, alarm=5.0, clear=3.8, baseline=1.0)
    modes, _, events = run_engine(cfg, thr, t, spikes)
    starts = [at for at, c in events if c.reason == "slowdown"]
    ends = [at for at, c in events if c.speed_limit_pct == 100.0]
    assert len(starts) == count_alarms(cfg, thr, t, spikes) == 2 * cfg.max_slowdowns_per_hour
    for s in starts:
        assert sum(1 for x in starts if s <= x < s + 3600.0) <= cfg.max_slowdowns_per_hour
    for prev_end, nxt in zip(ends, starts[1:], strict=False):
        assert nxt - prev_end >= cfg.realarm_s
    state = initial_state()
    for now, score in zip(t[:6000], spikes[:6000], strict=True):
        state, _ = step(cfg, thr, state, Tick(float(now), float(score)))
    assert state.n_suppressed > 0  # withheld alarms are counted for the log


def test_health_fault_releases_and_never_slows():
    cfg = AlarmConfig()
    t = series(30.0)
    score = np.full(t.size, 50.0)
    healthy = (t < 1.0) | (t >= 20.0)
    modes, _, events = run_engine(cfg, THR, t, score, healthy=healthy)
    assert events[0] == (pytest.approx(0.3), Command(70.0, "slowdown"))
    assert events[1] == (pytest.approx(1.0), Command(100.0, "health"))
    assert set(modes[(t >= 1.0) & (t < 20.0)]) == {"health_fault"}
    later = [at for at, c in events[2:] if c.reason == "slowdown"]
    # health back at 20 s: scores ignored for settle_s, then the on-delay
    assert later[0] == pytest.approx(20.0 + cfg.settle_s + cfg.on_delay_s)
    never = run_engine(cfg, THR, t, score, healthy=np.zeros(t.size, bool))
    assert set(never[0]) == {"health_fault"} and never[2] == []


def test_line_stopped_suppresses_until_settled():
    cfg = AlarmConfig()
    t = series(40.0)
    score = np.full(t.size, 50.0)
    running = (t < 2.0) | (t >= 12.0)  # stopped from 2 s to 12 s
    score[(t >= 12.0) & (t < 15.0)] = 10.0  # the restart's ramp-up transient, above watch
    score[(t >= 15.0) & (t < 20.0)] = 1.0  # back below watch from 15 s: settled at 18 s
    score[(t >= 16.0) & (t < 16.2)] = NAN  # no score for a moment: it holds the calm timer
    modes, alarm, events = run_engine(cfg, THR, t, score, running=running)
    assert events[:2] == [
        (pytest.approx(0.3), Command(70.0, "slowdown")),
        (pytest.approx(2.0), Command(100.0, "line_stopped")),
    ]
    # calm from 15.0 s for settle_s (3 s): scores count from the next step, 18.1 s; the score
    # is 50 again from 20 s, so the on-delay ends at 20.3 s
    first = next(at for at, c in events[2:] if c.reason == "slowdown")
    assert first == pytest.approx(20.0 + cfg.on_delay_s)
    assert not alarm[(t >= 2.0) & (t < first)].any()
    # the same restart with the score never calm: suspended for settle_max_s after the last
    # stopped step (11.9 s), then the on-delay
    long = series(11.9 + cfg.settle_max_s + 5.0)
    hot = np.full(long.size, 50.0)
    run_long = (long < 2.0) | (long >= 12.0)
    _, _, events = run_engine(cfg, THR, long, hot, running=run_long)
    first = next(at for at, c in events[2:] if c.reason == "slowdown")
    assert first == pytest.approx(11.9 + cfg.settle_max_s + cfg.on_delay_s)
    # settle_max_s at most settle_s: a fixed settling time after every restart
    fixed = cfg.model_copy(update={"settle_max_s": 0.0})
    _, _, events = run_engine(fixed, THR, long, hot, running=run_long)
    first = next(at for at, c in events[2:] if c.reason == "slowdown")
    assert first == pytest.approx(11.9 + cfg.settle_s + cfg.on_delay_s)
    stopped = run_engine(cfg, THR, t, score, running=np.zeros(t.size, bool))
    assert set(stopped[0]) == {"normal"} and stopped[2] == []


def test_run_engine_equals_stepping_every_tick():
    rng = np.random.default_rng(7)
    t, z = ar_score(seed=7, hours=600.0 / 3600.0)
    score = z**2  # exp of a unit-variance AR(1): above alarm 5 % of the time, in runs
    score[rng.random(t.size) < 0.02] = NAN
    healthy = ~((t > 100) & (t < 130))
    running = ~((t > 300) & (t < 340))
    modes, _, events = run_engine(FAST, THR, t, score, healthy, running)
    state, want_modes, want_events = initial_state(), [], []
    for tick in zip(t.tolist(), score.tolist(), healthy.tolist(), running.tolist(), strict=True):
        state, cmds = step(FAST, THR, state, Tick(*tick))
        want_modes.append(state.mode)
        want_events += [(tick[0], c) for c in cmds]
    assert modes.tolist() == want_modes and events == want_events
    assert len(events) > 20 and {"watch", "slowdown", "health_fault"} <= set(want_modes)


def ar_score(seed: int, hours: float, phi: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """10 Hz normal score: exp of a unit-variance Gaussian AR(1), a heavy right tail."""
    rng = np.random.default_rng(seed)
    t = series(hours * 3600.0)
    z = lfilter([math.sqrt(1.0 - phi**2)], [1.0, -phi], rng.standard_normal(t.size))
    return t, np.exp(0.5 * z)


@pytest.fixture(scope="module")
def long_normal() -> tuple[np.ndarray, np.ndarray]:
    return ar_score(seed=999, hours=48.0)


def test_calibration_meets_target_rate(long_normal):
    """Calibrated on 2 h, the engine's rate on an independent 48 h lies within a factor 2.

    Target 8 per shift: measured must be in [4, 16] per shift. Over 20 calibration seeds the
    measured rate ranged 2.8..14.8 (18/20 within tolerance, geometric mean 6.8); seed 0 is used.
    A threshold at the median, or the right one with 1.5x margin, must fail the same check.
    """
    cfg = AlarmConfig(false_alarms_per_shift=8.0)
    thr, report = calibrate_thresholds(cfg, [ar_score(seed=0, hours=2.0)])
    assert report["hours"] == pytest.approx(2.0, abs=0.01)
    assert report["predicted_per_shift"] == pytest.approx(8.0, rel=0.05)
    assert report["tail_points"] >= 10 and report["sigma"] > 0
    assert thr.baseline < thr.clear < thr.alarm and thr.watch <= thr.alarm
    count, hours, per_shift = false_alarm_rate(cfg, thr, [long_normal])
    assert hours == pytest.approx(48.0, abs=0.01)
    assert 4.0 <= per_shift <= 16.0, (count, per_shift)
    m = float(np.median(ar_score(seed=0, hours=2.0)[1]))  # the raw median score
    median = Thresholds(m, m, m, m)
    assert false_alarm_rate(cfg, median, [ar_score(seed=5, hours=2.0)])[2] > 16.0
    strict, _ = calibrate_thresholds(cfg.model_copy(update={"margin": 1.5}), [ar_score(0, 2.0)])
    assert false_alarm_rate(cfg, strict, [long_normal])[2] < 4.0


def test_calibration_low_target(long_normal):
    """Target 0.5 per shift (the default): at most 2 per shift on 48 h of normal footage."""
    cfg = AlarmConfig()
    thr, report = calibrate_thresholds(cfg, [ar_score(seed=0, hours=2.0)])
    assert report["method"] == "fit"
    assert false_alarm_rate(cfg, thr, [long_normal])[2] <= 2.0


def test_calibration_uses_running_mask_and_several_series():
    cfg = AlarmConfig(false_alarms_per_shift=8.0)
    t, s = ar_score(seed=1, hours=1.0)
    running = (t % 600.0) < 540.0  # a 60 s stop every 10 min
    thr, report = calibrate_thresholds(cfg, [(t, s, running), ar_score(seed=2, hours=1.0)])
    # six stops, five resumes in the first series; each resume settles once the (stationary)
    # score has stayed in its normal band for settle_s: at least that, and here within 5 s more
    ignored = 6 * 60.0 + 5 * cfg.settle_s
    assert 2.0 - (ignored + 5 * 5.0) / 3600.0 <= report["hours"] <= 2.0 - ignored / 3600.0 + 1e-9
    assert thr.settled is not None and thr.baseline < thr.settled < thr.alarm
    assert Thresholds.from_dict(thr.to_dict()) == thr


def test_restart_settles_on_a_line_running_above_its_calibration_band():
    """A line that runs a little higher than its calibration footage (above that footage's own
    99th percentile, below watch) still settles after a restart, and a precursor 25 s later
    alarms. With the restart band at the calibration's 99th percentile (the calm band), the
    monitor stayed blind for settle_max_s after every restart (measured on the benchmark line:
    95 of 120 one-minute clips never settled)."""
    cfg = AlarmConfig()
    t, s = ar_score(seed=3, hours=1.0)
    thr, report = calibrate_thresholds(cfg, [(t, s, (t % 600.0) < 540.0)])
    calm = report["calm_band"]
    assert calm < thr.watch and thr.settle_level == report["settled_band"] <= thr.alarm
    live = series(60.0)
    score = np.full(live.size, 0.5 * (calm + thr.watch))  # normal for this line, today
    score[live >= 30.0] = thr.alarm + 1.0  # the precursor
    running = live >= 2.0  # the line restarts at 2 s
    _, _, events = run_engine(cfg, thr, live, score, running=running)
    starts = [at for at, c in events if c.reason == "slowdown"]
    assert starts and starts[0] == pytest.approx(30.0 + cfg.on_delay_s)
    # the same footage under the calm band: still suspended when the precursor comes
    tight = Thresholds(thr.watch, thr.alarm, thr.clear, thr.baseline, settled=calm)
    _, _, events = run_engine(cfg, tight, live, score, running=running)
    assert not [at for at, c in events if c.reason == "slowdown"]


def test_calibration_rejects_short_or_constant():
    cfg = AlarmConfig()
    with pytest.raises(InputError, match=r"at least \d+ s of running normal footage .* got 5 s"):
        calibrate_thresholds(cfg, [ar_score(seed=0, hours=5.0 / 3600.0)])
    t = series(3600.0)
    with pytest.raises(InputError, match="constant"):
        calibrate_thresholds(cfg, [(t, np.full(t.size, 0.7))])
    with pytest.raises(InputError, match="at least"):
        calibrate_thresholds(cfg, [(t, np.ones(t.size), np.zeros(t.size, bool))])


def test_short_footage_falls_back_to_a_conservative_tail():
    """Five minutes cannot count 17 s alarm episodes; the per-step tail must err on the safe side:
    on an independent 48 h series it stays at or below the target rate (8 per shift)."""
    cfg = AlarmConfig(false_alarms_per_shift=8.0)
    thr, report = calibrate_thresholds(cfg, [ar_score(seed=0, hours=300.0 / 3600.0)])
    assert report["method"].startswith("short-footage")
    t, s = ar_score(seed=5, hours=48.0)
    per_shift = count_alarms(cfg, thr, t, s) / 48.0 * 8.0
    assert per_shift <= 8.0
    long_thr, _ = calibrate_thresholds(cfg, [ar_score(seed=0, hours=2.0)])
    assert thr.alarm > long_thr.alarm


def test_thresholds_and_config_validation():
    with pytest.raises(InputError, match="clear, watch, settled <= alarm"):
        Thresholds(watch=1.0, alarm=2.0, clear=3.0, baseline=0.5)
    with pytest.raises(InputError, match="lack baseline"):
        Thresholds.from_dict({"watch": 1.0, "alarm": 2.0, "clear": 1.5})
    with pytest.raises(ValidationError):
        AlarmConfig(slowdown_pct=5.0)
    with pytest.raises(ValidationError):
        AlarmConfig(surprise=1)
