"""The monitor process end to end: simulated line, in-process OPC UA PLC simulator, local store."""

from __future__ import annotations

import asyncio
import json

import pytest

from foresight.config import load_config
from foresight.dashboard.frames import read_latest
from foresight.model.checkpoint import load_model, save_model
from foresight.monitor.app import run_monitor
from foresight.store import Store


def _cfg(tmp_path, model, **monitor):
    over = [
        f"monitor.model={model}",
        f"monitor.health_file={tmp_path / 'health.json'}",
        f"store.path={tmp_path / 'store.sqlite'}",
        "monitor.speed=3",
        "plc.heartbeat_s=0.2",
    ]
    over += [f"monitor.{k}={v}" for k, v in monitor.items()]
    return load_config(preset="tiny", environ={}, overrides=over)


def _points(cfg, measurement):
    with Store.open(cfg.store, readonly=True) as store:
        return store.query(measurement, 0, 2**62)


def test_monitor_runs_the_simulated_line_and_logs(tiny_model, tmp_path):
    cfg = _cfg(tmp_path, tiny_model, duration_s=6)
    over = {"segment_s": 5.0, "guard_s": 0.0}
    footage = cfg.monitor.footage.model_copy(update=over)
    cfg = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"footage": footage})})
    c = asyncio.run(run_monitor(cfg))
    # 6 s at 3x real time: ~360 camera frames (20 fps) and ~180 model ticks (10 fps). What the
    # model cannot serve (the first step compiles) is skipped and counted, never queued.
    assert c.frames >= 200 and c.steps >= 10
    assert c.steps + c.skipped_ticks >= 0.8 * c.frames / 2
    assert c.heartbeats >= 10
    health = json.loads((tmp_path / "health.json").read_text())
    assert health["counters"]["steps"] == c.steps and health["plc_ok"] is True
    assert len(_points(cfg, "residual")) == c.steps
    assert len(_points(cfg, "alarm")) == c.steps
    # The dashboard's live frame: the model's view, what it expected, the heatmap.
    live = read_latest(tmp_path / "live")
    assert live is not None and live.frame.shape == live.predicted.shape
    assert live.frame.shape[:2] == (cfg.data.image_size,) * 2 and live.meta["model"]
    # Normal running footage reaches the archive in whole segments (no guard here), as captured.
    assert health["footage"]["segments"] >= 1 and "drift" in health
    segs = sorted((tmp_path / "archive").glob("*.json"))
    side = json.loads(segs[0].read_text())
    assert side["frames"] == round(5.0 * 10) and segs[0].with_suffix(".mp4").is_file()
    assert not list((tmp_path / "archive" / ".partial").glob("*"))


def test_slowdown_reaches_the_plc_and_is_confirmed(tiny_model, tmp_path):
    bundle = load_model(tiny_model)
    # An alarm level every score exceeds: the engine commands a slow-down after its on-delay.
    bundle.card["calibration"]["thresholds"] = {
        "watch": -100.0,
        "alarm": -100.0,
        "clear": -200.0,
        "baseline": -300.0,
    }
    # a score above every level never settles: a fixed settling time after the cold start
    bundle.card["calibration"].setdefault("alarms", {})["settle_max_s"] = 0.0
    hot = save_model(bundle, tmp_path / "hot")
    cfg = _cfg(tmp_path, hot, duration_s=8)
    # No rate limit here, so the read-back shows the full step (the limiter is tested in test_plc).
    cfg = cfg.model_copy(
        update={
            "plc": cfg.plc.model_copy(update={"max_step_pct_per_s": 1e6, "max_drop_pct_per_s": 1e6})
        }
    )
    c = asyncio.run(run_monitor(cfg))
    assert c.alarms >= 1 and c.commands_confirmed >= 1
    cmds = _points(cfg, "command")
    slow = [p for p in cmds if p.tags["reason"] == "slowdown"]
    assert slow and slow[0].fields["confirmed"] == 1
    assert slow[0].fields["applied_pct"] == pytest.approx(70.0)
    assert max(c.latencies_ms) < 2000
    # Alarmed footage is never archived as normal; the alarm leaves an evidence clip.
    assert not list((tmp_path / "archive").glob("*.mp4"))
    assert len(list((tmp_path / "clips").glob("*.webm"))) == 1


def test_model_ticks_stay_on_the_training_grid_with_a_25_fps_camera(tiny_model, tmp_path):
    """10 model steps per second of footage from a 25 fps camera, as ingest samples training
    footage (a tick one period after the frame used gave 8.3 per second)."""
    cfg = _cfg(tmp_path, tiny_model)

    async def at_25_fps(source):
        i = 0
        async for obs in source:
            yield obs._replace(t=i / 25.0)
            i += 1
            if i == 25 * 6:
                return

    c = asyncio.run(run_monitor(cfg, wrap_source=at_25_fps))
    assert c.frames == 150 and c.steps + c.skipped_ticks == 60
