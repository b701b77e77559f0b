"""The monitor's pipeline end to end on a tiny calibrated model: replay, health, baselines."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from foresight.calibration import engine_scores, running_mask, stream_features
from foresight.cli import main
from foresight.errors import InputError
from foresight.evaluate.run import load_recordings
from foresight.ingest.video import fit_frame
from foresight.model.checkpoint import load_model, read_card
from foresight.model.core import update_background
from foresight.model.predictor import Predictor
from foresight.pipeline import Pipeline, calibration_of, configs_of
from foresight.replay import replay
from foresight.residuals.config import ResidualConfig
from foresight.residuals.tracker import (
    Calibration,
    ResidualTracker,
    border_mask,
    fit_calibration,
)

SAMPLES = Path(__file__).parent.parent / "data_samples"
STATES = {"normal", "watch", "slowdown", "recovering", "health_fault"}


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def test_train_leaves_a_calibrated_model(tiny_model):
    card = read_card(tiny_model)
    cal = card["calibration"]
    thr = cal["thresholds"]
    assert thr["clear"] <= thr["alarm"] and thr["watch"] <= thr["alarm"]
    assert cal["footage"]["scored_seconds"] > 10
    bundle = load_model(tiny_model)
    restored = Calibration.from_arrays(bundle.extra)
    assert restored is not None and restored.samples > 0
    assert np.isfinite(bundle.extra["line.belt_speed"])


def test_replay_follows_the_schema(tiny_model, tmp_path, capsys):
    video = SAMPLES / "faults" / "a" / "clip_0000.mp4"
    out = tmp_path / "events.jsonl"
    assert main(["replay", str(video), "--model", str(tiny_model), "--out", str(out), "-q"]) == 0
    assert "slow-down" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(_frames(video))  # one line per input frame
    ts = [x["t"] for x in lines]
    assert ts == sorted(ts) and ts[0] == 0.0
    assert ts[1] == pytest.approx(1 / 25.0)
    for x in lines:
        assert x["state"] in STATES
        assert isinstance(x["alarm"], bool)
        assert x["score"] is None or math.isfinite(x["score"])
        assert x["alarm"] == (x["state"] == "slowdown")
    steps = sum(x["model_step"] for x in lines)
    assert steps == pytest.approx(len(lines) * 10 / 25, abs=2)  # the model runs at 10 fps
    scored = [x["score"] for x in lines if x["score"] is not None]
    assert len(scored) > len(lines) // 2


def test_replay_any_resolution_rate_and_container(tiny_model, tmp_path):
    frames = _frames(SAMPLES / "normal" / "clip_0000.mp4")[:150]
    path = tmp_path / "other.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (200, 150))
    for f in frames:
        w.write(cv2.resize(f, (200, 150)))
    w.release()
    out = tmp_path / "e.jsonl"
    summary = replay(tiny_model, path, out, progress=False)  # no CSV: video only
    lines = out.read_text().splitlines()
    assert len(lines) == len(frames) == summary.input_frames
    assert summary.model_steps == pytest.approx(len(frames) / 3, abs=2)


def test_replay_bad_inputs_are_one_line_errors(tiny_model, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="bad.mp4"):
        replay(tiny_model, bad, tmp_path / "x.jsonl", progress=False)
    assert not (tmp_path / "x.jsonl").exists()
    video = tmp_path / "v.mp4"
    video.write_bytes((SAMPLES / "normal" / "clip_0000.mp4").read_bytes())
    (tmp_path / "v.csv").write_text("t,foo\n0,1\n1,2\n")
    with pytest.raises(InputError, match="none of the model's sensor columns"):
        replay(tiny_model, video, tmp_path / "x.jsonl", progress=False)
    with pytest.raises(InputError, match="no such model directory"):
        replay(tmp_path / "nope", video, tmp_path / "x.jsonl", progress=False)


def test_calibration_replays_what_the_pipeline_hands_the_engine(tiny_model, tmp_path):
    """The thresholds are fitted on calibration's replay of the score, so the monitor's pipeline
    must hand the alarm engine that very score, step for step: same warm-up, gates and tracker.
    Compared while both learn alike: the pipeline stops learning outside normal mode and while
    the line stands, and calibration never meets those steps."""
    bundle = load_model(tiny_model)
    fps, size = float(bundle.data["fps"]), int(bundle.data["image_size"])
    channels = tuple(bundle.data.get("channels", ()))
    clip = tmp_path / "held_out"
    clip.mkdir()
    for ext in ("mp4", "csv"):  # a sample the fixture neither trained nor calibrated on
        shutil.copy(SAMPLES / "normal" / f"clip_0003.{ext}", clip / f"clip_0003.{ext}")
    rec = next(load_recordings([clip], size, fps, channels, bundle.roi))
    # the 60-step fixture's watch level is low: its short visits to watch would pause learning
    thr = bundle.card["calibration"]["thresholds"]
    thr.update({k: 1e6 for k in ("watch", "alarm", "clear", "settled") if k in thr})
    pipe = Pipeline(bundle)
    seen, alike = [], []
    for i in range(len(rec.frames)):
        out = pipe.step(rec.frames[i], rec.sensors[i], i / fps)
        seen.append(math.nan if out.occluded or out.speed_change else out.score)
        alike.append(out.running and out.state == "normal")
    rcfg, _ = configs_of(bundle)
    cal, _, refs = calibration_of(bundle)
    feats = stream_features(Predictor(bundle), rcfg, rec.frames, rec.sensors)
    usable = running_mask(rec.frames, rec.sensors, channels, refs)
    usable[: pipe._warm] = False
    replayed = engine_scores(
        rcfg, cal, fps, channels, max(bundle.model_cfg.horizons), rec.sensors, feats, usable
    )
    n = int(np.argmin(alike)) if not all(alike) else len(alike)
    assert n >= 150, f"only {n} comparable steps"
    scored = np.isfinite(replayed[:n])
    assert scored.sum() >= 50
    np.testing.assert_array_equal(np.isfinite(np.asarray(seen[:n])), scored)
    np.testing.assert_allclose(np.asarray(seen[:n])[scored], replayed[:n][scored], rtol=1e-5)


def test_uncalibrated_model_is_refused(tiny_model):
    bundle = load_model(tiny_model)
    bundle.card.pop("calibration")
    with pytest.raises(InputError, match="not calibrated"):
        Pipeline(bundle)


def test_frozen_camera_raises_health_and_never_slows(tiny_model):
    bundle = load_model(tiny_model)
    pipe = Pipeline(bundle)
    roi = bundle.card["config"]["ingest"]["roi"]
    frames = [
        fit_frame(f, 32, tuple(roi) if roi else None)
        for f in _frames(SAMPLES / "normal" / "clip_0001.mp4")[::5]
    ]
    raw = np.full(6, np.nan, np.float32)
    raw[0] = bundle.extra["line.belt_speed"]  # the line says it runs
    # A quiet line first (whatever this briefly trained model scores), then the freeze.
    pipe.thr = type(pipe.thr)(watch=1e9, alarm=1e9, clear=1e9, baseline=1e9)
    outs = [pipe.step(f, raw, k / 10) for k, f in enumerate(frames[:60])]
    assert outs[-1].state == "normal" and outs[-1].health is None
    frozen = frames[60]
    # The camera freezes for 4 s; even a huge score could not command a slow-down now.
    pipe.thr = type(pipe.thr)(watch=-1e9, alarm=-1e9, clear=-1e9, baseline=-1e9)
    outs += [pipe.step(frozen, raw, (60 + k) / 10) for k in range(40)]
    tail = outs[-25:]
    assert all(o.state == "health_fault" and o.health == "frozen_frames" for o in tail)
    assert not any(o.alarm for o in outs[60:])
    assert all(c.speed_limit_pct == 100.0 for o in outs[60:] for c in o.commands)


def test_anomalous_samples_do_not_teach_the_background():
    bg = np.zeros((1, 4, 4, 3), np.float32)
    frame = np.ones((1, 4, 4, 3), np.float32)
    n = np.array([10.0])
    assert np.allclose(update_background(bg, frame, n, 0.2, np.array([0.0])), 0.0)
    assert np.allclose(update_background(bg, frame, n, 0.2, np.array([1.0])), 0.2)


def _features(rng, n, nh=2, r=16, s=3):
    return {
        "pixel": rng.normal(size=(n, nh, r)).astype(np.float32),
        "latent": rng.normal(size=(n, nh)).astype(np.float32),
        "sensor": rng.normal(size=(n, nh, s)).astype(np.float32),
    }


def test_tracker_normalises_localises_and_learns_only_from_normal():
    rng = np.random.default_rng(0)
    train = _features(rng, 4000)
    train["pixel"][:, :, 5] = train["pixel"][:, :, 5] * 4 + 10  # a noisy, offset region
    cal = fit_calibration([train])
    assert abs(cal.center["pixel"][0, 5] - 10) < 0.3 and abs(cal.scale["pixel"][0, 5] - 4) < 0.3
    tr = ResidualTracker(ResidualConfig(smooth_seconds=0), cal, fps=10)
    test = _features(np.random.default_rng(1), 200)
    scores = [tr.update({k: v[i] for k, v in test.items()}).score for i in range(200)]
    # Each of the 6 component-horizon values is ~N(0, 1) after stage 2; the score is their max,
    # whose median is about 1.27.
    assert 0.8 < np.median(scores) < 1.8
    spike = {k: v[0].copy() for k, v in test.items()}
    spike["pixel"][0, 9] = 12.0  # region 9 diverges
    res = tr.update(spike, learn=False)
    assert res.score > 4 and np.unravel_index(np.argmax(res.heatmap), (4, 4)) == (2, 1)
    before = {k: v.copy() for k, v in tr.trend.items()}
    tr.update(spike, learn=False)
    assert all(np.array_equal(before[k], tr.trend[k]) for k in before)
    tr.update(spike, learn=True)
    assert not np.array_equal(before["regions"], tr.trend["regions"])


def test_tail_scaling_equalises_exceedance_across_cells():
    """Two cells with the same bulk (MAD) but different tails: scaled by the MAD the heavy one
    dominates the worst-cell score; scaled by the 0.999 quantile both pass a given z equally
    often. With too few samples for that quantile the MAD is kept."""
    rng = np.random.default_rng(3)
    n, q = 40_000, 0.999
    train = _features(rng, n, nh=1, r=2, s=1)
    heavy = rng.standard_t(2, size=n).astype(np.float32)  # same bulk as N(0,1), far heavier tail
    train["pixel"][:, 0, 1] = heavy
    mad = fit_calibration([train])
    tail = fit_calibration([train], tail_quantile=q)
    assert abs(mad.scale["pixel"][0, 1] / mad.scale["pixel"][0, 0] - 1.2) < 0.3  # bulk alike
    assert tail.scale["pixel"][0, 1] > 3 * tail.scale["pixel"][0, 0]
    test = _features(np.random.default_rng(4), n, nh=1, r=2, s=1)
    test["pixel"][:, 0, 1] = np.random.default_rng(5).standard_t(2, size=n)

    def exceed(cal):
        z = (test["pixel"][:, 0] - cal.center["pixel"][0]) / cal.scale["pixel"][0]
        return (z > 3.09).mean(axis=0)  # the normal 0.999 quantile

    light, heavy_rate = exceed(mad)
    assert heavy_rate > 10 * light  # the MAD lets the heavy-tailed cell alarm far more often
    light, heavy_rate = exceed(tail)
    assert 0.3 < heavy_rate / light < 3 and 0.0003 < light < 0.003
    few = fit_calibration([{k: v[:5000] for k, v in train.items()}], tail_quantile=q)
    short = fit_calibration([{k: v[:5000] for k, v in train.items()}])
    np.testing.assert_allclose(few.scale["pixel"], short.scale["pixel"])


def test_evaluate_runs_every_method_on_the_samples(tiny_model, tmp_path, capsys):
    bench = tmp_path / "B.md"
    rc = main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--data",
            str(SAMPLES / "faults" / "a"),
            "--fit",
            str(SAMPLES / "normal"),
            "--out",
            str(tmp_path / "ev"),
            "--benchmarks",
            str(bench),
            "-q",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    methods = set(report["calibrated"])
    assert {
        "foresight",
        "frame_diff",
        "sensor_3sigma",
        "sensor_pca",
        "copy-last residual",
    } <= methods
    assert report["calibrated"]["foresight"]["overall"]["n"] == 4
    assert len(list((tmp_path / "ev" / "plots").glob("fault_*.png"))) == 4
    text = bench.read_text()
    assert "<!-- bench:evaluate -->" in text
    assert "Training stopped by " in text and "best held-out frame objective" in text


def test_counter_channels_do_not_feed_the_score():
    rng = np.random.default_rng(2)
    train = _features(rng, 2000)
    mask = np.array([True, True, False])  # channel 2 is a cumulative counter
    cal = fit_calibration([train], mask)
    assert np.array_equal(Calibration.from_arrays(cal.to_arrays()).sensor_mask, mask)
    tr = ResidualTracker(ResidualConfig(smooth_seconds=0), cal, fps=10)
    quiet = {k: v[0].copy() for k, v in _features(np.random.default_rng(3), 1).items()}
    base = tr.update(quiet).score
    counter = {k: v.copy() for k, v in quiet.items()}
    counter["sensor"][:, 2] = 50.0  # the counter ticks: reported, not scored
    res = tr.update(counter)
    assert res.score == pytest.approx(base) and res.sensors[2] > 10
    real = {k: v.copy() for k, v in quiet.items()}
    real["sensor"][:, 0] = 50.0
    assert tr.update(real).score > base + 10


def test_the_frame_rim_is_on_the_heatmap_but_not_in_the_score():
    rng = np.random.default_rng(6)
    train = _features(rng, 2000, r=64)  # an 8 x 8 grid of regions
    inner = border_mask(64, 1 / 8)  # one region of rim on each side
    assert inner.reshape(8, 8)[1:7, 1:7].all() and inner.sum() == 36
    assert border_mask(64, 0.0) is None and border_mask(0, 0.25) is None
    with pytest.raises(InputError, match="no region"):
        border_mask(16, 0.5)
    train["pixel"][:, :, 0] += 20.0 * (rng.random((2000, 2)) < 0.05)  # rare entries at the rim
    cal = fit_calibration([train], pixel_mask=inner)
    assert np.array_equal(Calibration.from_arrays(cal.to_arrays()).pixel_mask, inner)
    # stage 2 is fitted on the inner regions alone: the rim's entries do not widen it
    alone = fit_calibration([{**train, "pixel": train["pixel"][..., inner]}])
    np.testing.assert_allclose(cal.top_center, alone.top_center, atol=1e-5)
    np.testing.assert_allclose(cal.top_scale, alone.top_scale, atol=1e-5)
    assert not np.allclose(fit_calibration([train]).top_scale[0], alone.top_scale[0], atol=1e-3)
    tr = ResidualTracker(ResidualConfig(smooth_seconds=0), cal, fps=10)
    quiet = {k: v[0].copy() for k, v in _features(np.random.default_rng(7), 1, r=64).items()}
    base = tr.update(quiet).score
    rim = {k: v.copy() for k, v in quiet.items()}
    rim["pixel"][:, 0] = 30.0  # top-left corner: something entering the picture
    res = tr.update(rim)
    assert res.score == pytest.approx(base) and res.heatmap[0, 0] > 10
    middle = {k: v.copy() for k, v in quiet.items()}
    middle["pixel"][:, 8 * 4 + 4] = 30.0
    assert tr.update(middle).score > base + 10


def test_recalibrate_command(tiny_model, tmp_path, capsys):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    shards = tiny_model.parent / "model.shards"
    assert main(["calibrate", "--model", str(model), "--data", str(shards), "-q"]) == 0
    assert "alarm level" in capsys.readouterr().out
    thr = read_card(model)["calibration"]["thresholds"]
    assert thr["baseline"] < thr["alarm"]
    # --footage: every recording given is held-out normal footage, read as replay reads it
    # (the model never trained on clips 3-5 of the samples)
    extra = tmp_path / "later"
    extra.mkdir()
    for f in sorted((SAMPLES / "normal").glob("clip_000[3-5].*")):
        shutil.copy(f, extra / f.name)
    assert main(["calibrate", "--model", str(model), "--data", str(extra), "--footage", "-q"]) == 0
    footage = read_card(model)["calibration"]["footage"]
    assert footage["recordings"] == 3 and footage["seconds"] == pytest.approx(90.0, abs=0.5)
    missing = tmp_path / "nowhere"
    assert main(["calibrate", "--model", str(model), "--data", str(missing), "--footage"]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
