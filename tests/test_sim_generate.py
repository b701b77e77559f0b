"""simulate_to_dir writes mp4 + CSV pairs, labels.json last, and the CLI runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from foresight.cli import main
from foresight.config import load_config
from foresight.schema import LINE_STATES, SENSOR_CHANNELS
from foresight.sim.config import FAULT_TYPES, SimConfig
from foresight.sim.generate import simulate_to_dir
from foresight.sim.line import LineSim


def tiny(**update) -> SimConfig:
    return load_config(preset="tiny").sim.model_copy(update=update)


def read_video(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 64, 3)
        n += 1
    cap.release()
    return n


def check_labels(out: Path, cfg: SimConfig) -> dict:
    labels = json.loads((out / "labels.json").read_text())
    assert set(labels) == {"faults", "line_states", "files"}
    durations = {}
    for f in labels["files"]:
        assert set(f) == {"file", "start", "duration"}
        assert (out / f["file"]).is_file() and (out / f["file"]).with_suffix(".csv").is_file()
        durations[f["file"]] = f["duration"]
    for r in labels["faults"]:
        assert set(r) == {"file", "type", "precursor_start", "jam_onset", "line_stopped_until"}
        assert r["type"] in FAULT_TYPES and r["file"] in durations
        assert 0 <= r["precursor_start"] < durations[r["file"]]
        if r["jam_onset"] is None:
            assert r["line_stopped_until"] is None
        else:
            assert r["precursor_start"] < r["jam_onset"] <= durations[r["file"]]
            assert r["line_stopped_until"] > r["jam_onset"] + cfg.jam_stop_seconds - 1e-6
    for name, dur in durations.items():
        segs = [s for s in labels["line_states"] if s["file"] == name]
        assert segs[0]["start"] == 0 and segs[-1]["end"] == pytest.approx(dur)
        for a, b in zip(segs, segs[1:], strict=False):
            assert a["end"] == pytest.approx(b["start"]) and a["state"] != b["state"]
        assert all(s["state"] in LINE_STATES for s in segs)
    return labels


def test_simulate_to_dir_writes_clips_csvs_and_labels(tmp_path):
    cfg = tiny(faults_per_hour=600.0, seed=3)
    summary = simulate_to_dir(cfg, tmp_path, hours=50 / 3600, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "clip_0000.csv", "clip_0000.mp4", "clip_0001.csv", "clip_0001.mp4",
        "clip_0002.csv", "clip_0002.mp4", "labels.json", "sim_config.json",
    ]  # fmt: skip
    for k, expected in enumerate((400, 400, 200)):
        with (tmp_path / f"clip_{k:04d}.csv").open() as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == ("t", *SENSOR_CHANNELS)
        assert len(rows) - 1 == expected == read_video(tmp_path / f"clip_{k:04d}.mp4")
        assert float(rows[1][0]) == 0.0 and float(rows[2][0]) == pytest.approx(1 / cfg.fps)
    labels = check_labels(tmp_path, cfg)
    assert [f["duration"] for f in labels["files"]] == [20.0, 20.0, 10.0]
    assert labels["faults"], "600 faults/h over 50 s should give at least one"
    assert SimConfig.model_validate_json((tmp_path / "sim_config.json").read_text()) == cfg
    assert summary.files == 3 and summary.frames == 1000
    assert sum(summary.faults_by_type.values()) == len(labels["faults"])
    text = summary.describe()
    assert "3 files" in text and "jams" in text and "averted" in text


def test_labels_match_the_live_simulation_and_stops_carry_over(tmp_path):
    cfg = tiny(faults_per_hour=600.0, seed=5, clip_seconds=8.0)
    simulate_to_dir(cfg, tmp_path, hours=60 / 3600, progress=False)
    labels = check_labels(tmp_path, cfg)
    sim = LineSim(cfg, horizon_s=60.0)
    for _ in range(1200):
        sim.step()
    starts = {f["file"]: f["start"] for f in labels["files"]}
    got = [(r["type"], starts[r["file"]] + r["precursor_start"]) for r in labels["faults"]]
    want = [(e.kind, e.precursor_start) for e in sim.events]
    assert [k for k, _ in got] == [k for k, _ in want]
    assert [t for _, t in got] == pytest.approx([t for _, t in want])
    spill = [
        r
        for r in labels["faults"]
        if r["line_stopped_until"]
        and r["line_stopped_until"]
        > next(f["duration"] for f in labels["files"] if f["file"] == r["file"])
    ]
    assert spill
    for r in spill:  # a stop running past the end of its file starts the next file stopped
        k = int(r["file"][5:9])
        nxt = [s for s in labels["line_states"] if s["file"] == f"clip_{k + 1:04d}.mp4"]
        assert not nxt or nxt[0]["state"] == "stopped"


@pytest.mark.parametrize("kind", FAULT_TYPES)
def test_every_fault_type_is_labelled(tmp_path, kind):
    cfg = tiny(faults_per_hour=600.0, fault_types=(kind,), seed=1)
    simulate_to_dir(cfg, tmp_path, hours=40 / 3600, progress=False)
    labels = check_labels(tmp_path, cfg)
    assert {r["type"] for r in labels["faults"]} == {kind}


def test_interrupted_run_leaves_no_labels(tmp_path, monkeypatch):
    (tmp_path / "labels.json").write_text('{"stale": true}')
    real_step = LineSim.step
    calls = {"n": 0}

    def failing_step(self):
        calls["n"] += 1
        if calls["n"] > 500:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(LineSim, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        simulate_to_dir(tiny(), tmp_path, hours=60 / 3600, progress=False)
    assert not (tmp_path / "labels.json").exists()
    assert (tmp_path / "clip_0000.mp4").exists()  # finished clips stay
    assert not (tmp_path / "clip_0001.mp4").exists()  # the half-written one is not published
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_0000.csv", "clip_0000.mp4", "sim_config.json"
    ]  # fmt: skip


def test_rejects_non_positive_hours(tmp_path):
    from foresight.errors import ConfigError

    with pytest.raises(ConfigError, match="hours"):
        simulate_to_dir(tiny(), tmp_path, hours=0.0, progress=False)


def test_cli_simulate_tiny(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--preset", "tiny", "--hours", "0.01", "--out", str(out), "-q"])
    assert rc == 0
    assert (out / "labels.json").is_file() and (out / "clip_0001.mp4").is_file()
    assert "simulated 0.010 h" in capsys.readouterr().out
    rc = main(["simulate", "--preset", "tiny", "--hours", "-1", "--out", str(out), "-q"])
    assert rc == 2
