"""Dashboard helpers against a real store: trends, alarm episodes, feedback, requests, files,
login. ``populate`` (a recorded line with one slow-down) is shared with the app tests."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from foresight.config import load_config
from foresight.dashboard import auth, data, feedback, frames, plots, requests
from foresight.dashboard.config import DashboardConfig, load_settings, paths
from foresight.errors import ConfigError
from foresight.store import Point, Store, StoreConfig

SAMPLE_MODEL = Path(__file__).parent.parent / "data_samples" / "model"
HORIZONS = (0.1, 0.3, 0.7)
PASSWORD = "correct horse"
#: the hash is computed once per test session
_HASH: dict[str, str] = {}


def password_hash() -> str:
    """A valid hash of ``PASSWORD`` (computed once)."""
    if not _HASH:
        _HASH["h"] = auth.hash_password(PASSWORD, "scrypt")
    return _HASH["h"]


def populate(root: Path, seconds: float = 120.0, alarm_at: float = 60.0) -> dict:
    """A store with ``seconds`` of 10 Hz telemetry ending now and one slow-down ``alarm_at``
    seconds ago (6 s slow-down, 5 s recovery), a drift event, a fresh health file, two model
    versions, a published frame and an evidence clip. Returns the overrides and times."""
    models = root / "models"
    for name, created in (("v1", "2026-01-01T00:00:00+00:00"), ("v2", "2026-02-01T00:00:00+00:00")):
        (models / name).mkdir(parents=True)
        card = json.loads((SAMPLE_MODEL / "model.json").read_text())
        card["created"] = created
        (models / name / "model.json").write_text(json.dumps(card))
    overrides = [
        f"store.path={root / 'store' / 'foresight.sqlite'}",
        f"monitor.health_file={root / 'monitor' / 'health.json'}",
        f"monitor.model={models / 'v2'}",
    ]
    cfg = load_config(preset="tiny", environ={}, overrides=overrides)
    now = time.time_ns()
    t0 = now - int(seconds * 1e9)
    start = now - int(alarm_at * 1e9)
    end_slow, end_rec = start + 6 * 10**9, start + 11 * 10**9
    pts = []
    model = "2026-02-01T00:00:00+00:00"
    rng = np.random.default_rng(0)
    for k in range(int(seconds * 10)):
        t = t0 + k * 10**8
        score = 1.1 + 0.1 * rng.standard_normal()
        if start - 5 * 10**8 <= t < end_slow - 2 * 10**9:
            score = 5.0 + (t - start) / 1e9 * 0.2
        state, limit = "normal", 100.0
        if start <= t < end_slow:
            state, limit = "slowdown", 70.0
        elif end_slow <= t < end_rec:
            state, limit = "recovering", 70.0 + 30.0 * (t - end_slow) / 5e9
        fields = {"score": score, "instant": score, "z_belt_speed": 0.5}
        fields |= {f"h{h:g}s": score * (1 + i) for i, h in enumerate(HORIZONS)}
        pts.append(Point("residual", {"line": "line-1", "model": model}, fields, t))
        af = {"code": 0, "alarm": int(state == "slowdown"), "speed_limit_pct": limit}
        pts.append(Point("alarm", {"line": "line-1", "model": model, "state": state}, af, t))
    with Store.open(cfg.store, line=cfg.line.name) as store:
        store.write(pts)
        store.write_drift("lighting", 4.2, time_ns=now - 30 * 10**9)
    p = paths(cfg)
    p.health.parent.mkdir(parents=True, exist_ok=True)
    p.health.write_text(json.dumps({"time": time.time(), "state": "normal", "model": model}))
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = 200
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 9.0
    frames.publish_latest(p.live, img, img // 2, heat, {"time": time.time(), "horizon_s": 0.7})
    frames.write_evidence_clip(p.clips, start + 10**8, [img] * 20, fps=10)
    return {"overrides": overrides, "cfg": cfg, "start": start, "end": end_rec - 10**8, "now": now}


@pytest.fixture
def line(tmp_path):
    """A populated store and its config."""
    return populate(tmp_path)


def test_trend_is_bucketed_and_has_every_horizon(line):
    with data.open_store(line["cfg"]) as store:
        tr = data.trend(store, line["now"] - 120 * 10**9, line["now"] + 1, max_points=100)
    assert list(tr) == ["score", "h0.1s", "h0.3s", "h0.7s"]
    assert len(tr["score"].time_ns) <= 100 and tr["score"].count.sum() == 1200
    assert tr["score"].max.max() > 5.0  # the spike survives downsampling


def test_alarm_episode_spans_slowdown_and_recovery(line):
    with data.open_store(line["cfg"]) as store:
        (a,) = data.alarm_episodes(store, line["now"] - 3600 * 10**9, line["now"] + 1)
    assert a.start_ns == line["start"] and a.end_ns == line["end"]
    assert a.duration_s == pytest.approx(10.9)
    assert a.peak_score == pytest.approx(5.0 + 3.9 * 0.2, abs=0.01)
    assert a.min_speed_pct == 70.0 and a.model.startswith("2026-02")


def test_live_state_and_stale_health(line):
    p = paths(line["cfg"])
    with data.open_store(line["cfg"]) as store:
        s = data.live_state(store, p.health, stale_s=10)
        assert s.state == "normal" and s.speed_limit_pct == 100.0 and not s.stale
        assert data.live_state(store, p.health, 10, now=time.time() + 60).stale


def test_drift_is_active_until_a_retrain_finishes(line):
    cfg = line["cfg"]
    with data.open_store(cfg) as store:
        d = data.drift_status(store, 0, line["now"] + 1, None)
        assert d.active and d.last.tags["kind"] == "lighting"
        rdir = paths(cfg).requests
        op = auth.login({"op": password_hash()}, "op", PASSWORD)
        requests.request_retrain(rdir, op, "lighting")
        (req,) = requests.take(rdir, ("retrain",))
        requests.finish(rdir, req, ok=True, message="promoted")
        handled = data.drift_handled_ns(rdir)
        assert not data.drift_status(store, 0, line["now"] + 1, handled).active


def test_model_versions_from_cards(line):
    versions = data.model_versions(line["cfg"], "2026-02-01T00:00:00+00:00")
    assert [v.path.name for v in versions] == ["v2", "v1"]
    assert versions[0].running and versions[0].configured and not versions[1].running
    assert versions[0].thresholds is not None and versions[0].thresholds.alarm > 0


def test_password_hashes_and_signed_operators():
    h = password_hash()
    assert auth.verify_password(PASSWORD, h) and not auth.verify_password("nope", h)
    assert auth.login({"ann": h}, "ann", "nope") is None
    assert auth.login({"ann": h}, "bob", PASSWORD) is None
    op = auth.login({"ann": h}, "ann", PASSWORD)
    assert auth.require(op) is op
    with pytest.raises(auth.LoginRequired):
        auth.require(auth.Operator("ann", "forged"))
    with pytest.raises(auth.LoginRequired):
        auth.require(None)
    assert auth.check_hash("plain text") is not None
    with pytest.raises(ValueError, match="dashboard.users.ann"):
        DashboardConfig(users={"ann": "plain"})


def test_control_actions_fail_without_login(line):
    rdir = paths(line["cfg"]).requests
    forged = auth.Operator("mallory", "0" * 64)
    with data.open_store(line["cfg"]) as store:
        for who in (None, forged):
            with pytest.raises(auth.LoginRequired):
                feedback.record_feedback(store, who, line["start"], "false_alarm")
            with pytest.raises(auth.LoginRequired):
                feedback.acknowledge(store, who, line["start"])
            with pytest.raises(auth.LoginRequired):
                requests.request_retrain(rdir, who)
            with pytest.raises(auth.LoginRequired):
                requests.request_rollback(rdir, who, "models/v1")
            with pytest.raises(auth.LoginRequired):
                requests.request_dry_run(rdir, who, True)
        assert feedback.feedback_labels(store, 0, 2**62) == {}
    assert requests.pending(rdir) == []


def test_feedback_is_durable_and_mirrored(line):
    op = auth.login({"ann": password_hash()}, "ann", PASSWORD)
    with data.open_store(line["cfg"]) as store:
        feedback.record_feedback(store, op, line["start"], "false_alarm", "glare")
        feedback.record_feedback(store, op, line["start"], "jam_precursor")
        feedback.acknowledge(store, op, line["start"])
        with pytest.raises(ValueError, match="unknown feedback label"):
            feedback.record_feedback(store, op, line["start"], "maybe")
        (mirror, *_) = store.query("feedback", 0, 2**62)
        assert mirror.tags["alarm_ns"] == str(line["start"]) and mirror.fields["code"] == 1
    with Store.open(StoreConfig(path=line["cfg"].store.path), readonly=True) as store:
        assert feedback.feedback_labels(store, 0, 2**62) == {line["start"]: "jam_precursor"}
        (a,) = data.alarm_episodes(store, 0, 2**62)
        assert a.ack[0] == "ann" and a.feedback.label == "jam_precursor"


def test_request_contract(tmp_path):
    op = auth.login({"ann": password_hash()}, "ann", PASSWORD)
    r1 = requests.request_retrain(tmp_path, op, "lighting changed")
    assert requests.request_retrain(tmp_path, op) == r1  # no double queue
    requests.request_rollback(tmp_path, op, "/models/v1")
    requests.request_dry_run(tmp_path, op, True)
    assert [r.kind for r in requests.pending(tmp_path)] == ["retrain", "rollback", "dry_run"]
    (taken,) = requests.take(tmp_path, ("retrain",))
    assert requests.take(tmp_path, ("retrain",)) == []
    requests.report_progress(tmp_path, taken, 0.5, "training")
    assert requests.in_progress(tmp_path)[0].progress == 0.5
    done = requests.finish(tmp_path, taken, ok=False, message="gate: worse on held-out")
    assert requests.finished(tmp_path) == [done] and requests.in_progress(tmp_path) == []
    doc = json.loads((tmp_path / "done" / taken.name).read_text())
    assert doc["ok"] is False and doc["operator"] == "ann" and doc["reason"] == "lighting changed"


def test_frame_and_clip_contracts(tmp_path):
    assert frames.read_latest(tmp_path) is None
    f = np.random.default_rng(1).random((16, 16, 3))
    frames.publish_latest(tmp_path, f, f, np.ones((2, 2)), {"score": np.float32(2.5)})
    got = frames.read_latest(tmp_path)
    assert got.frame.dtype == np.uint8 and got.meta["score"] == 2.5
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
    clip = frames.write_evidence_clip(tmp_path / "clips", 10**18, [f] * 5, fps=5)
    assert clip.name == f"{10**18}.webm" and clip.stat().st_size > 0
    assert frames.clip_for(tmp_path / "clips", 10**18 + 10**9) == clip
    assert frames.clip_for(tmp_path / "clips", 10**18 + 60 * 10**9) is None
    import cv2

    cap = cv2.VideoCapture(str(clip))
    ok, img = cap.read()
    assert ok and min(img.shape[:2]) >= 240
    overlay = plots.heat_overlay(got.frame, got.heatmap)
    assert overlay.shape == got.frame.shape and overlay.dtype == np.uint8


def test_settings_before_the_config_table_exists(tmp_path):
    h = password_hash()
    cfg, d = load_settings(
        overrides=["dashboard.viewing=login", f'dashboard.users.ann="{h}"', "line.name=l2"]
    )
    assert cfg.line.name == "l2" and d.viewing == "login" and d.users == {"ann": h}
    with pytest.raises(ConfigError, match="dashboard.viewing"):
        load_settings(overrides=["dashboard.viewing=maybe"])
    assert math.isfinite(data.thresholds_of(data.read_card_safe(SAMPLE_MODEL)).alarm)
    assert data.read_card_safe(tmp_path / "none") is None
