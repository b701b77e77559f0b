"""NAB bench: the causal likelihood on the tracker score, alarm-engine onsets, the level sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.realdata import monitor as mon
from foresight.realdata import nab
from foresight.realdata import nab_scoring as ns
from foresight.realdata.sensormodel import SensorModelConfig

CFG = mon.alarm_config(1 / 168, off_delay_s=2 * nab.DT, realarm_s=12 * nab.DT)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


def test_surprise_is_causal():
    x = _noise(800)
    u = nab.surprise(x, 50)
    y = x.copy()
    y[500:] = 100.0 * _noise(300, 1) + 7.0  # another future
    v = nab.surprise(y, 50)
    assert np.array_equal(u[:500], v[:500], equal_nan=True)
    assert not np.allclose(u[500:], v[500:])


def test_surprise_ignores_rows_before_start_and_needs_history():
    x = _noise(200)
    u = nab.surprise(x, 30, short=10, min_history=20)
    # the first mean is at row 30 + 9 = 39, the first judged row has 20 earlier means
    assert np.isnan(u[: 39 + 20]).all() and np.isfinite(u[39 + 20 :]).all()
    y = x.copy()
    y[:30] = 1e6  # training rows do not enter
    assert np.array_equal(u, nab.surprise(y, 30, short=10, min_history=20), equal_nan=True)
    with pytest.raises(InputError):
        nab.surprise(x, 0, short=0)


def test_surprise_is_on_one_scale_whatever_the_score_scale():
    x = _noise(1000)
    u = nab.surprise(x, 0)
    assert np.allclose(nab.surprise(50.0 * x - 300.0, 0), u, equal_nan=True, atol=1e-6)
    # a Gaussian score: the surprise's median is -log10(1/2) and its tail is about right
    ok = np.isfinite(u)
    assert np.median(u[ok]) == pytest.approx(nab.BASELINE, abs=0.1)
    assert 0.002 < (u[ok] >= 2.0).mean() < 0.03


def test_level_shift_in_the_score_is_detected_near_the_shift():
    x = _noise(1500, 3)
    x[900:] += 3.0
    u = nab.surprise(x, 0)
    level = nab.NabSettings().alarm_level()
    got = nab.onsets(CFG, level, u, 100, 288)
    assert got.size >= 1
    assert 900 <= got[0] <= 910  # found within the short window
    assert (got < 900).sum() == 0  # nothing before it


def test_regime_change_stops_alarming():
    # a shift that stays: the history widens and the alarms stop (no flood of false positives)
    x = _noise(6000, 4)
    x[1000:] += 4.0
    u = nab.surprise(x, 0)
    got = nab.onsets(CFG, nab.NabSettings().alarm_level(), u, 200, 288)
    assert got.size and got[0] >= 1000
    assert got.size <= 3
    assert np.nanmean(u[4000:]) < 1.0


def test_onsets_hold_off_for_hold_rows():
    u = np.zeros(2000)
    u[100:1000] = 5.0  # one long excursion: the engine stays in slow-down, one onset
    u[[1100, 1200, 1500]] = 5.0  # 1200 is within 288 rows of 1100
    assert nab.onsets(CFG, 3.0, u, 0, 288).tolist() == [100, 1100, 1500]
    # without a hold-off, every slow-down start of the engine counts
    assert nab.onsets(CFG, 3.0, u, 0, 0).tolist() == [100, 1100, 1200, 1500]
    assert nab.onsets(CFG, 3.0, u, 1050, 288).tolist() == [1100, 1500]
    assert nab.onsets(CFG, math.inf, u, 0, 288).size == 0
    _, starts = mon.alarms(CFG, nab.likelihood_thresholds(3.0, CFG), u, nab.DT)
    assert starts.tolist() == [100, 1100, 1200, 1500]


def test_likelihood_thresholds_and_label_free_level():
    s = nab.NabSettings()
    assert s.alarm_level() == pytest.approx(-math.log10(300 / (168 * 3600)))  # 3.30
    thr = nab.likelihood_thresholds(s.alarm_level(), CFG)
    assert thr.baseline == pytest.approx(math.log10(2))
    assert thr.baseline < thr.clear < thr.alarm and thr.watch <= thr.alarm
    assert thr.watch == pytest.approx(s.alarm_level() - math.log10(CFG.watch_factor))
    low = nab.likelihood_thresholds(0.1, CFG)  # below the median: clamped, still valid
    assert low.alarm == low.clear == pytest.approx(nab.BASELINE)


def test_sweep_levels_picks_the_best_total_and_the_highest_on_ties():
    rw = ns.row_weights(1000, [(600, 699)], "standard")  # probation 150 rows
    levels = np.array([1.0, 2.0, 3.0, np.inf])
    dets = [
        np.array([300, 400, 610]),  # two false positives, an early hit
        np.array([610]),  # the hit alone: best
        np.array([690]),  # a late hit
        np.array([], int),  # nothing: a miss
    ]
    level, total = nab.sweep_levels([(rw, dets)], levels)
    det = np.zeros(1000, bool)
    det[610] = True
    assert level == 2.0 and total == pytest.approx(ns.file_score(rw, det))
    level, _ = nab.sweep_levels([(rw, [dets[1], dets[1], dets[3], dets[3]])], levels)
    assert level == 2.0  # the highest of the best


def test_run_nab_end_to_end_on_a_tiny_corpus(tmp_path):
    n = 1200
    rng = np.random.default_rng(5)
    t = np.arange(n)
    values = 10 + np.sin(2 * np.pi * t / 48) + 0.1 * rng.normal(size=n)
    values[800:] += 4.0  # an incident at row 800
    times = np.datetime64("2014-01-01T00:00") + t * np.timedelta64(5, "m")
    stamp = [str(x).replace("T", " ") for x in times]
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    lines = ["timestamp,value"] + [f"{a},{v:.4f}" for a, v in zip(stamp, values, strict=True)]
    (tmp_path / "data" / "c" / "a.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels" / "combined_windows.json").write_text(
        json.dumps({"c/a.csv": [[stamp[780] + ".000000", stamp[860] + ".000000"]]})
    )
    s = nab.NabSettings(model=SensorModelConfig(horizons=(1, 3, 12), window=48).tiny())
    res = nab.run_nab(tmp_path, s)
    std = res["profiles"]["standard"]
    assert res["label_free_level"] == pytest.approx(s.alarm_level())
    lf = std["label_free"]["per_file"]["a"]
    assert lf > 50  # detected early in the window, no false positive worth its weight
    assert std["sweep"]["per_file"]["a"] >= lf - 1e-9  # the sweep can only do as well or better
    assert std["sweep"]["level"] in nab.LEVELS
