"""Faults injected into the running monitor: camera stall and freeze (in-process), and InfluxDB
outage, PLC restart, kill -9 and SIGTERM of a monitor process (``foresight bench faults`` code).

The shipped sample model is used (no training); ``bench_model`` turns its occlusion gate off and,
for the process run, makes it hold a slow-down so the faults have a command to disturb.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from foresight.bench.faults import camera_run, process_run, report
from foresight.config import load_config
from foresight.monitor.app import SAMPLE_MODEL


def _cfg(*over: str):
    return load_config(preset="tiny", environ={}, overrides=list(over))


def test_camera_stall_and_freeze_raise_health_and_never_slow_down(tmp_path):
    cfg = _cfg("monitor.speed=2", "monitor.stall_s=1")
    r = asyncio.run(camera_run(cfg, tmp_path, 3.0, SAMPLE_MODEL))
    stall, freeze = r["stall"], r["freeze"]
    # stall_s, then at most one health-file period
    assert stall["reason"] == "no_frame" and stall["detected_s"] < 2.5
    assert freeze["reason"] == "frozen_frames" and freeze["detected_s"] < 1.5
    for k in (stall, freeze):
        assert k["slowdowns"] == 0 and k["alarms"] == 0 and k["min_limit"] == 100.0


def test_outage_plc_restart_kill9_and_sigterm_of_a_monitor_process(tmp_path):
    """Short back-offs so the whole scenario fits a test; the bench runs the defaults."""
    if shutil.which("victoria-metrics") is None:
        pytest.skip("victoria-metrics not installed: the outage needs a real server")
    cfg = _cfg(
        "monitor.speed=3",
        "influx.retry_min_s=0.1",
        "influx.retry_max_s=0.5",
        "influx.flush_interval_s=0.2",
        "plc.reconnect_min_s=0.1",
        "plc.reconnect_max_s=0.5",
        "plc.heartbeat_s=0.2",
        "plc.heartbeat_timeout_s=1.0",
    )
    p = asyncio.run(process_run(cfg, tmp_path, 2.0, 1.0, SAMPLE_MODEL))
    d = p["delivery"]
    assert d["lost"] == 0 and d["dropped"] == 0 and d["points"] > 100
    assert p["backlog"] > 0 and p["drain_s"] < 10
    assert p["target_pct"] == 70.0 and p["plc_after_session_s"] <= 5.0
    assert p["plc_reassert_s"] < 5.0
    # watchdog: the limit is back at 100 about heartbeat_timeout_s after the monitor died
    assert 0.5 <= p["revert_s"] <= p["timeout_s"] + 1.0
    # what the killed process had counted in its last health file is stored (durable spool)
    assert p["after_kill"]["alarm"] >= p["steps_at_last_health"] > 0
    assert p["sigterm_rc"] == 0 and p["after_sigterm_pct"] == 100.0
    camera = {"fault_s": 1.0}
    camera |= {k: {"reason": "no_frame", "detected_s": 2.2, "slowdowns": 0} for k in ("stall",)}
    camera["freeze"] = {"reason": "frozen_frames", "detected_s": 0.3, "slowdowns": 0}
    for k in ("stall", "freeze"):
        camera[k]["min_limit"] = 100.0
    md = report(p, camera, 2.0, 1.0)
    assert "points lost: 0 of" in md and "MISSED" not in md
