"""Scorers of the real-data benchmarks on tiny hand-made cases, scores worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foresight.realdata import nab_scoring as ns
from foresight.realdata.skab_scoring import (
    ScoredFile,
    changepoint_scores,
    outlier_scores,
    predicted_changepoints,
    scale,
    windows,
)
from foresight.realdata.tep import fault_metrics


def _times(n: int, step_s: int = 1) -> np.ndarray:
    return np.datetime64("2020-01-01T00:00:00") + np.arange(n) * np.timedelta64(step_s, "s")


def test_skab_outlier_counts_summed_over_files():
    # file A: true 0011, pred 0110 -> TP 1, TN 1, FP 1, FN 1
    # file B: true 1100, pred 1100 -> TP 2, TN 2
    # totals TP 3, TN 3, FP 1, FN 1: F1 = 3 / (3 + 1) = 0.75, FAR = 1/4 = 25 %, MAR = 1/4 = 25 %
    a = ScoredFile(_times(4), np.array([0, 0, 1, 1]), np.zeros(4), np.array([0, 1, 1, 0]))
    b = ScoredFile(_times(4), np.array([1, 1, 0, 0]), np.zeros(4), np.array([1, 1, 0, 0]))
    out = outlier_scores([a, b])
    assert (out["tp"], out["tn"], out["fp"], out["fn"]) == (3, 3, 1, 1)
    assert out["f1"] == pytest.approx(0.75)
    assert out["far"] == pytest.approx(25.0) and out["mar"] == pytest.approx(25.0)


def test_skab_predicted_changepoints_are_both_edges():
    # prediction 1 1 0 1 -> first element 1, then |diff| = 0 1 1
    assert predicted_changepoints(np.array([1, 1, 0, 1])).tolist() == [1, 0, 1, 1]


def test_skab_windows_cut_the_right_one():
    t = _times(200)
    cp = np.zeros(200)
    cp[[10, 40, 150]] = 1
    w = windows(t, cp)
    # [10, 70] then [40, 100] overlaps: the second starts at 70; [150, 210] stands alone
    assert [
        (int((a - t[0]) / np.timedelta64(1, "s")), int((b - t[0]) / np.timedelta64(1, "s")))
        for a, b in w
    ] == [(10, 70), (70, 100), (150, 210)]


def test_skab_scale_ends():
    # tanh scale: A_tp at the window start, A_fp at its end, midpoint (A_tp + A_fp) / 2
    assert scale(0.0, 1.0, -0.11) == pytest.approx(1.0)
    assert scale(1.0, 1.0, -0.11) == pytest.approx(-0.11)
    assert scale(0.5, 1.0, -0.11) == pytest.approx(0.445, abs=2e-3)


def test_skab_changepoint_scores_by_hand():
    # 300 rows at 1 s; true changepoints at 50 and 200 -> windows [50, 110] and [200, 260].
    # Prediction: alarm rows 50..149 -> edges at 50 (in window 1, position 0) and 150 (between
    # windows -> FP); nothing in window 2 -> missed.
    # standard: 1 (TP at start) - 0.11 (FP) - 1 (FN) = -0.11; null -2, perfect 2
    #   -> 100 * (-0.11 + 2) / 4 = 47.25
    # lowfp: 1 - 0.22 - 1 = -0.22 -> 100 * 1.78 / 4 = 44.5
    # lowfn: 1 - 0.11 - 2 = -1.11; null -4, perfect 2 -> 100 * 2.89 / 6 = 48.1667
    n = 300
    cp = np.zeros(n)
    cp[[50, 200]] = 1
    pred = np.zeros(n, int)
    pred[50:150] = 1
    out = changepoint_scores([ScoredFile(_times(n), np.zeros(n), cp, pred)])
    assert (out["missed"], out["fps"], out["windows"]) == (1, 1, 2)
    assert out["nab_standard"] == pytest.approx(47.25)
    assert out["nab_lowfp"] == pytest.approx(44.5)
    assert out["nab_lowfn"] == pytest.approx(100 * 2.89 / 6)


def test_skab_changepoint_late_detection_scores_less():
    # one window [10, 70]; detection at 40 s = halfway: scale(0.5) ~ 0.445 -> standard
    # 100 * (0.445 + 1) / 2 ~ 72.2, below the 100 of a detection at the window start
    n = 100
    cp = np.zeros(n)
    cp[10] = 1
    pred = np.zeros(n, int)
    pred[40:] = 1
    out = changepoint_scores([ScoredFile(_times(n), np.zeros(n), cp, pred)])
    assert out["nab_standard"] == pytest.approx(100 * (scale(0.5, 1, -0.11) + 1) / 2)
    assert 70 < out["nab_standard"] < 75


def test_nab_scaled_sigmoid_values():
    # 2 / (1 + e^0) - 1 = 0; beyond 3 -> -1; at -1: 2 / (1 + e^-5) - 1 = 0.98661
    assert ns.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert ns.scaled_sigmoid(3.5) == -1.0
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.986614, abs=1e-6)


def test_nab_probation():
    # min(floor(0.15 n), 750)
    assert ns.probation(100) == 15 and ns.probation(4032) == 604 and ns.probation(10320) == 750


def test_nab_file_score_by_hand():
    # 40 rows, probation floor(6) = 6; one window rows 20..29 (W = 10).
    # Detection at row 20: -(29 - 20 + 1) / 10 = -1 -> weight 1 (tp / maxTP).
    # Detection at row 10 (before any window): -0.11 in the standard profile.
    # Detection at row 3: probationary, ignored.
    # Detection at row 30: just past the window: |29 - 30| / 9 -> 2 / (1 + e^(5/9)) - 1 = -0.2708
    #   times fp 0.11 = -0.02979.
    rw = ns.row_weights(40, [(20, 29)], "standard")
    det = np.zeros(40, bool)
    det[[3, 10, 20, 30]] = True
    det[ns.probation(40) :] &= True
    det[: ns.probation(40)] = False
    expect = 1.0 - 0.11 + 0.11 * (2 / (1 + math.exp(5 / 9)) - 1)
    assert ns.file_score(rw, det) == pytest.approx(expect)
    # a later detection in the same window is worth less; only the best counts
    late = np.zeros(40, bool)
    late[27] = True
    assert 0 < ns.file_score(rw, late) < 1
    # no detection: -fn per window; normalised: S = -1 -> 0, S = 1 -> 100
    assert ns.file_score(rw, np.zeros(40, bool)) == -1.0
    assert ns.normalised(-1.0, 1, "standard") == 0.0 and ns.normalised(1.0, 1, "standard") == 100


def test_nab_low_fn_profile_doubles_the_miss():
    # reward_low_FN_rate: fn weight 2 -> S_null = -2 per window; a miss normalises to 0
    rw = ns.row_weights(40, [(20, 29)], "reward_low_FN_rate")
    assert ns.file_score(rw, np.zeros(40, bool)) == -2.0
    assert ns.normalised(-2.0, 1, "reward_low_FN_rate") == 0.0


def test_nab_sweep_picks_the_best_corpus_threshold():
    # One file, window rows 20..29. Scores: 0.9 at row 10 (FP, -0.11), 0.8 at row 20 (TP, +1).
    # threshold 0.9: -0.11 - 1 (window missed) = -1.11; 0.8: -0.11 + 1 = 0.89; inf: -1.
    # The best is 0.8 with a total of 0.89.
    rw = ns.row_weights(40, [(20, 29)], "standard")
    s = np.full(40, np.nan)
    s[10], s[20] = 0.9, 0.8
    thr, total = ns.sweep([(rw, s)])
    assert thr == pytest.approx(0.8) and total == pytest.approx(0.89)
    levels = np.array([np.inf, 0.9, 0.8])
    assert ns.score_curve(rw, s, levels) == pytest.approx([-1.0, -1.11, 0.89])


def test_nab_published_no_window_rows_reconstruct():
    # ec2_cpu_utilization_c6585a has no window: every detection weighs -fp (before any window).
    # Published raw scores (LEADERBOARD.md): numenta -0.33 standard, -0.66 low FP, -0.33 low FN
    # -> 3 detections. Rebuild them and score all three profiles.
    published = {"standard": -0.33, "reward_low_FP_rate": -0.66, "reward_low_FN_rate": -0.33}
    k = round(-published["standard"] / 0.11)
    n = 4032
    det = np.zeros(n, bool)
    det[[1000, 2000, 3000][:k]] = True
    for profile, raw in published.items():
        rw = ns.row_weights(n, [], profile)
        assert ns.file_score(rw, det) == pytest.approx(raw)


def test_tep_fault_metrics_by_hand():
    # 960 rows, alarms on rows 0 and 165..959: FAR pre-onset 1/160; MDR: rows 160..164 missed
    # -> 5 / 800 = 0.00625; delay 5 samples
    alarm = np.zeros(960, bool)
    alarm[0] = True
    alarm[165:] = True
    m = fault_metrics(alarm)
    assert m["far_pre"] == pytest.approx(1 / 160)
    assert m["mdr"] == pytest.approx(5 / 800)
    assert m["delay"] == 5
