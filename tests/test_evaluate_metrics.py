"""Benchmark metrics, baselines and figures on hand-made and seeded synthetic inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.evaluate.baselines import (
    FrameDiff,
    SensorPCA,
    SensorSigma,
    causal_ewma,
    make_baselines,
)
from foresight.evaluate.metrics import (
    FileResult,
    alarm_onsets,
    evaluate_files,
    labels_for_file,
    markdown_table,
    median_interval,
    poisson_interval,
    wilson_interval,
)
from foresight.evaluate.plots import plot_fault, plot_lead_histogram
from foresight.schema import SENSOR_CHANNELS
from foresight.sim.config import FAULT_TYPES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _alarm(n: int, runs: list[tuple[int, int]]) -> np.ndarray:
    a = np.zeros(n, bool)
    for i, j in runs:
        a[i:j] = True
    return a


def _hand_case() -> list[FileResult]:
    """File a: 20 s at 10 steps/s, onsets at 3.0 (false), 10.8 (flap_rise, lead 1.7 s) and
    13.0 (after the jam: false); the skew window 15.0-16.0 has no onset (missed); running
    0-12.5 and 14-20 s = 18.5 s. File b: 10 s, no line states (10 s running), alarm on at the
    first sample (false) and an onset exactly at the glue_miss jam onset 5.6 (lead 0)."""
    labels = {
        "faults": [
            {"file": "a.mp4", "type": "flap_rise", "precursor_start": 10.0, "jam_onset": 12.5},
            {"file": "a.mp4", "type": "skew", "precursor_start": 15.0, "jam_onset": 16.0},
            {"file": "b.mp4", "type": "glue_miss", "precursor_start": 5.0, "jam_onset": 5.6},
        ],
        "line_states": [
            {"file": "a.mp4", "state": "running", "start": 0.0, "end": 12.5},
            {"file": "a.mp4", "state": "stopped", "start": 12.5, "end": 14.0},
            {"file": "a.mp4", "state": "running", "start": 14.0, "end": 20.0},
        ],
    }
    fa, sa = labels_for_file(labels, "a.mp4")
    fb, sb = labels_for_file(labels, "b.mp4")
    assert len(fa) == 2 and len(sa) == 3 and len(fb) == 1 and sb == ()
    a = FileResult("a.mp4", np.arange(200) * 0.1, _alarm(200, [(30, 35), (108, 115), (130, 135)]))
    a = FileResult(a.file, a.t, a.alarm, fa, sa)
    b = FileResult("b.mp4", np.arange(100) * 0.1, _alarm(100, [(0, 3), (56, 60)]), fb, sb)
    return [a, b]


def test_alarm_onsets_counts_a_true_first_sample():
    assert alarm_onsets(np.array([1, 1, 0, 1, 0, 0, 1], bool)).tolist() == [0, 3, 6]
    assert alarm_onsets(np.zeros(0, bool)).tolist() == []


def test_hand_made_case_exact_numbers():
    s = evaluate_files(_hand_case())
    flap, skew, glue = s.by_type["flap_rise"], s.by_type["skew"], s.by_type["glue_miss"]
    assert (flap.n, flap.detected, flap.detected_lead1) == (1, 1, 1)
    assert flap.leads == pytest.approx((1.7,))
    assert (skew.n, skew.detected, skew.leads) == (1, 0, ())
    assert skew.recall == 0.0 and np.isnan(skew.median_lead)
    assert (glue.n, glue.detected, glue.detected_lead1) == (1, 1, 0)
    assert glue.leads == pytest.approx((0.0,), abs=1e-9)
    # every fault type is listed, even without any fault
    assert list(s.by_type) == list(FAULT_TYPES)
    assert s.by_type["belt_slip"].n == 0 and np.isnan(s.by_type["belt_slip"].recall)
    o = s.overall
    assert (o.n, o.detected, o.detected_lead1) == (3, 2, 1)
    assert o.recall == pytest.approx(2 / 3) and o.recall_lead1 == pytest.approx(1 / 3)
    assert o.median_lead == pytest.approx(0.85)
    # false alarms: a@3.0, a@13.0 (after the jam), b@0.0; running 18.5 + 10.0 = 28.5 s
    assert s.false_alarms == 3
    assert [(f, round(t, 6)) for f, t in s.false_alarm_onsets] == [
        ("a.mp4", 3.0),
        ("a.mp4", 13.0),
        ("b.mp4", 0.0),
    ]
    assert s.running_hours == pytest.approx(28.5 / 3600)
    assert s.false_alarms_per_shift == pytest.approx(3 * 8 * 3600 / 28.5)  # 3031.58
    scale = 8 * 3600 / 28.5
    assert s.false_alarms_per_shift_ci == pytest.approx((0.6187 * scale, 8.7673 * scale), 1e-4)
    out = s.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["by_type"]["belt_slip"]["recall"] is None
    assert [f["detected"] for f in out["faults"]] == [True, False, True]


def test_an_alarm_while_the_jam_forms_is_false_and_listed_as_late():
    """Jam at 5.0 s, the line stops at 5.6 s: onsets at 1.0, 5.3 and 9.0 s are all false alarms
    (outside every precursor window), and the one at 5.3 s is also listed as late (the jam was
    real; no detection either)."""
    faults = ({"file": "c", "type": "flap_rise", "precursor_start": 3.0, "jam_onset": 5.0},)
    states = (
        {"file": "c", "state": "running", "start": 0.0, "end": 5.6},
        {"file": "c", "state": "stopped", "start": 5.6, "end": 8.0},
        {"file": "c", "state": "running", "start": 8.0, "end": 10.0},
    )
    alarm = _alarm(100, [(10, 12), (53, 56), (90, 92)])
    s = evaluate_files([FileResult("c", np.arange(100) * 0.1, alarm, faults, states)])
    assert s.overall.detected == 0 and s.false_alarms == 3
    assert [round(t, 6) for _, t in s.false_alarm_onsets] == [1.0, 5.3, 9.0]
    assert [(f, round(t, 6)) for f, t in s.late_onsets] == [("c", 5.3)]
    assert s.to_dict()["late_alarms"] == 1
    assert "(3 in 0.00 h; 1 of them late, during a jam)" in markdown_table({"m": s})
    # without line states there is no known stop: nothing is listed as late
    bare = evaluate_files([FileResult("c", np.arange(100) * 0.1, alarm, faults)])
    assert bare.false_alarms == 3 and bare.late_onsets == ()


def test_running_hours_only_count_the_scored_span():
    states = ({"file": "c", "state": "running", "start": 0.0, "end": 60.0},)
    r = FileResult("c", 5.0 + np.arange(100) * 0.1, np.zeros(100, bool), (), states)
    assert evaluate_files([r]).running_hours == pytest.approx(10.0 / 3600)


def test_markdown_table_lists_every_method_and_type():
    s = evaluate_files(_hand_case())
    table = markdown_table({"foresight": s, "frame_diff": s})
    rows = [line for line in table.splitlines() if line.startswith("| foresight")]
    assert len(rows) == len(FAULT_TYPES) + 1
    assert "| foresight | skew | 1 | 0/1 = 0.00 [0.00, 0.79] |" in table
    assert "3031.58 [" in table and "| frame_diff | all | 3 |" in table


def test_bad_inputs_are_clear_errors():
    with pytest.raises(InputError, match="alarm has"):
        evaluate_files([FileResult("x", np.arange(3.0), np.zeros(2, bool))])
    bad = ({"type": "skew", "precursor_start": 1.0},)
    with pytest.raises(InputError, match="jam_onset"):
        evaluate_files([FileResult("x", np.arange(3.0), np.zeros(3, bool), bad)])


def test_wilson_and_poisson_against_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))
    assert poisson_interval(0) == pytest.approx((0.0, 3.6889), abs=1e-4)
    assert poisson_interval(5) == pytest.approx((1.6235, 11.6683), abs=1e-4)
    assert poisson_interval(10) == pytest.approx((4.7954, 18.3904), abs=1e-4)


def test_median_interval_order_statistics():
    lo, hi, cover = median_interval(np.arange(10.0, 0.0, -1.0))  # 1..10 unsorted
    assert (lo, hi) == (2.0, 9.0) and cover == pytest.approx(1 - 2 * 11 / 1024)
    lo, hi, cover = median_interval([3.0, 1.0])  # too few for 95 %: [min, max], coverage 0.5
    assert (lo, hi, cover) == (1.0, 3.0, 0.5)


# --------------------------------------------------------------------------- baselines


def _frames(seed: int, steps: int = 40, event_at: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    background = np.random.default_rng(0).uniform(40, 200, (32, 32, 3))
    frames = background + rng.normal(0, 2.0, (steps, 32, 32, 3))
    if event_at is not None:
        frames[event_at:, 8:16, 8:16] = 250.0
    return np.clip(frames, 0, 255).astype(np.uint8)


def _empty_sensors(frames: np.ndarray) -> np.ndarray:
    return np.zeros((len(frames), 0), np.float32)


def test_frame_diff_scores_an_abrupt_block_change_above_normal():
    fd = FrameDiff().fit((f, _empty_sensors(f)) for f in (_frames(s) for s in (1, 2, 3)))
    normal = fd.score(_frames(4), None)
    event = fd.score(_frames(5, event_at=25), None)
    assert np.isnan(normal[0]) and np.isnan(event[0])
    assert np.nanmax(event) == event[25]
    assert event[25] > 20 * max(np.nanmax(normal), 1.0)
    assert fd.block_scores(_frames(5, event_at=25))[25].argmax() == 1 * 4 + 1  # block (1, 1)


def test_scores_are_causal():
    rng = np.random.default_rng(7)
    frames, sensors = _frames(8), rng.normal(size=(40, len(SENSOR_CHANNELS))).astype(np.float32)
    sensors[:, SENSOR_CHANNELS.index("photo_eye_count")] = np.arange(40)
    baselines = make_baselines()
    for b in baselines.values():
        b.fit([(_frames(s), rng.normal(size=(40, 6)).cumsum(0)) for s in (1, 2)])
    later_f, later_s = frames.copy(), sensors.copy()
    later_f[21:] = 255 - later_f[21:]
    later_s[21:] += 50.0
    for name, b in baselines.items():
        before, after = b.score(frames, sensors), b.score(later_f, later_s)
        assert before.shape == (40,), name
        np.testing.assert_array_equal(before[:21], after[:21], err_msg=name)
        assert not np.allclose(before[21:], after[21:]), name


def test_sensor_sigma_is_one_at_three_sigma_and_ignores_constant_channels():
    rng = np.random.default_rng(11)
    train = np.stack([rng.normal(5.0, 2.0, 50_000), np.full(50_000, 1.0)], axis=1)
    sigma = SensorSigma(channels=("a", "const")).fit(
        [(None, train[:25_000]), (None, train[25_000:])]
    )
    probe = np.array([[5.0 + 3 * 2.0, 1.0], [5.0 - 1.5 * 2.0, 7.0], [np.nan, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = sigma.score(None, probe)
    assert sigma.available
    assert score[0] == pytest.approx(1.0, abs=0.02)
    assert score[1] == pytest.approx(0.5, abs=0.02)
    assert np.isnan(score[2])


def test_sensor_sigma_differences_the_counter_channel():
    rng = np.random.default_rng(3)

    def clip(steps: int) -> np.ndarray:
        x = rng.normal(1.0, 0.1, (steps, len(SENSOR_CHANNELS)))
        x[:, SENSOR_CHANNELS.index("photo_eye_count")] = rng.poisson(2, steps).cumsum()
        return x

    sigma = SensorSigma().fit([(None, clip(2000)) for _ in range(3)])
    score = sigma.score(None, clip(2000))
    assert np.nanmedian(score) < 0.5 and np.mean(score > 1.0) < 0.02


def test_sensor_baselines_without_sensors_are_unavailable():
    frames = _frames(1, steps=5)
    nan_sensors = np.full((5, len(SENSOR_CHANNELS)), np.nan, np.float32)
    for cls in (SensorSigma, SensorPCA):
        for sensors in (_empty_sensors(frames), nan_sensors):
            b = cls().fit([(frames, sensors)])
            assert not b.available
            score = b.score(frames, sensors)
            assert score.shape == (5,) and np.all(np.isnan(score))


def test_pca_catches_a_broken_correlation_that_three_sigma_misses():
    rng = np.random.default_rng(5)
    x = rng.normal(size=6000)
    train = np.stack([x, x + rng.normal(0, 0.05, x.size)], axis=1)
    clips = [(None, train[:3000]), (None, train[3000:])]
    pca = SensorPCA(channels=("x", "y")).fit(clips)
    sigma = SensorSigma(channels=("x", "y")).fit(clips)
    broken = np.array([[1.5, -1.5]])
    assert sigma.score(None, broken)[0] < 1.0
    assert pca.score(None, broken)[0] > 10.0
    x2 = rng.normal(size=4000)
    normal = np.stack([x2, x2 + rng.normal(0, 0.05, x2.size)], axis=1)
    assert np.mean(pca.score(None, normal) > 1.0) < 0.04


def test_causal_ewma_skips_nan():
    y = causal_ewma(np.array([np.nan, 1.0, np.nan, 3.0]), 0.5)
    np.testing.assert_allclose(y, [np.nan, 1.0, 1.0, 2.0])
    with pytest.raises(InputError):
        causal_ewma(np.zeros(3), 0.0)


# --------------------------------------------------------------------------- figures


def test_plots_write_png_atomically(tmp_path):
    t = np.arange(100) * 0.1
    score = np.sin(t) + 1.0
    alarm = (t > 4.0) & (t < 6.0)
    fault = {"type": "skew", "precursor_start": 3.5, "jam_onset": 6.5}
    path = plot_fault(
        tmp_path / "fault.png",
        t,
        score,
        {"alarm": 1.5, "clear": 1.0},
        fault,
        alarm,
        heatmap=np.random.default_rng(0).random((4, 4)),
        frame=_frames(1, steps=1)[0],
        title="skew at 6.5 s",
    )
    plain = plot_fault(tmp_path / "plain.png", t, score, {}, None, None, None, None, "normal")
    hist = plot_lead_histogram(tmp_path / "leads.png", {"skew": [1.7, 0.4], "glue_miss": []})
    for p in (path, plain, hist):
        assert p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fault.png", "leads.png", "plain.png"]


def test_an_alarm_carried_over_from_the_previous_clip_is_not_a_new_onset():
    t = np.arange(0.0, 10.0, 0.1)
    alarm = np.zeros(t.size, bool)
    alarm[:5] = True  # still on from the clip before
    assert alarm_onsets(alarm).tolist() == [0]
    assert alarm_onsets(alarm, carried=True).tolist() == []
    fresh = evaluate_files([FileResult("b.mp4", t, alarm)])
    carried = evaluate_files([FileResult("b.mp4", t, alarm, carried=True)])
    assert (fresh.false_alarms, carried.false_alarms) == (1, 0)


def test_slowdown_cap_follows_the_footage_fault_rate(tmp_path):
    """Dense benchmark footage lifts the engine's per-hour cap (else it measures the cap);
    footage at a real line's rate, or without labels, keeps the configured cap."""
    from foresight.evaluate.run import slowdown_cap

    def labels(folder, faults, clips):
        folder.mkdir()
        doc = {
            "faults": [{"file": "c.mp4", "type": "skew"}] * faults,
            "files": [{"file": f"c{i}.mp4", "duration": 60.0} for i in range(clips)],
        }
        (folder / "labels.json").write_text(json.dumps(doc))
        return folder

    dense = labels(tmp_path / "dense", 47, 120)  # 47 faults in 2 h
    assert slowdown_cap(6, [dense]) == 47
    sparse = labels(tmp_path / "sparse", 4, 480)  # 4 faults in 8 h
    assert slowdown_cap(6, [sparse]) == 6
    assert slowdown_cap(6, [tmp_path / "nothing"]) == 6
    assert slowdown_cap(6, [dense, sparse]) == 11  # 51 faults in 10 h: 5.1 an hour, doubled
