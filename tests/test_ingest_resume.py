"""Resuming, interruption by SIGKILL, parallel workers and memory that does not grow with length."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.ingest import ShardDataset, run_ingest

# Runs one ingest in a fresh interpreter and prints its peak RSS (KiB on Linux).
INGEST_SCRIPT = """
import json, resource, sys
from pathlib import Path
from foresight.config import load_config
from foresight.ingest import run_ingest
from foresight.ingest.config import DataConfig, IngestConfig

if __name__ == "__main__":
    inputs, out, sets = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    cfg = load_config(preset="tiny", environ={})
    data = DataConfig.model_validate({**cfg.data.model_dump(), **sets.get("data", {})})
    ingest = IngestConfig.model_validate({**cfg.ingest.model_dump(), **sets.get("ingest", {})})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = run_ingest([Path(inputs)], Path(out), data, ingest, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base": base, "peak": peak, "frames": report.frames,
                      "failed": [m for _, m in report.failed]}))
"""


def _ingest_subprocess(inputs: Path, out: Path, sets: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORESIGHT_")}
    return subprocess.Popen(
        [sys.executable, "-c", INGEST_SCRIPT, str(inputs), str(out), json.dumps(sets)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _three_clips(root: Path, clips, channels) -> Path:
    for i, (n, fps) in enumerate([(60, 30.0), (45, 15.0), (80, 20.0)]):
        video = clips.video(root / f"clip_{i}.mp4", n, fps)
        if i != 1:
            clips.csv(video.with_suffix(".csv"), np.arange(0, n / fps, 0.2), channels)
    return root


def test_second_run_skips_and_stale_dirs_are_removed(tmp_path, tiny_cfg, clips):
    inputs = _three_clips(tmp_path / "in", clips, tiny_cfg.data.channels)
    out = tmp_path / "out"
    first = run_ingest([inputs], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    assert len(first.ok) == 3 and not first.skipped
    before = _tree(out)
    (out / "sources" / "0123456789abcdef.partial").mkdir()
    (out / "sources" / "0123456789abcdef.partial" / "frames.u8").write_bytes(b"half")
    (out / "sources" / "fedcba9876543210").mkdir()  # renamed but never entered the manifest
    second = run_ingest([inputs], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    assert not second.ok and len(second.skipped) == 3 and not second.failed
    assert "3 skipped" in second.describe()
    assert _tree(out) == before


def test_damaged_source_is_ingested_again(tmp_path, tiny_cfg, clips):
    inputs = _three_clips(tmp_path / "in", clips, tiny_cfg.data.channels)
    out = tmp_path / "out"
    run_ingest([inputs], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    before = _tree(out)
    victim = json.loads((out / "manifest.json").read_text())["sources"][1]
    (out / victim["dir"] / "sensors.f32").unlink()
    report = run_ingest([inputs], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    assert [p.name for p in report.ok] == [victim["name"]] and len(report.skipped) == 2
    assert _tree(out) == before


def test_sigkill_mid_ingest_leaves_only_complete_sources(tmp_path, tiny_cfg, clips):
    inputs = tmp_path / "in"
    clips.video(inputs / "a_short.mp4", 20, 10.0)
    clips.video(inputs / "b_long.mp4", 3000, 60.0, 160, 120)
    out = tmp_path / "out"
    data = {"fps": 60.0, "image_size": 64}
    proc = _ingest_subprocess(inputs, out, {"data": data, "ingest": {"chunk_frames": 8}})
    deadline = time.monotonic() + 60
    while not list(out.glob("sources/*.partial/frames.u8")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be interrupted"
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["sources"]] == ["a_short.mp4"]
    assert len(ShardDataset(out).sources) == 1  # its files are complete
    assert list(out.glob("sources/*.partial"))  # the kill left a partial behind

    data = tiny_cfg.data.model_copy(update=data)
    ingest = tiny_cfg.ingest.model_copy(update={"chunk_frames": 8})
    report = run_ingest([inputs], out, data, ingest, progress=False)
    assert [p.name for p in report.ok] == ["b_long.mp4"] and len(report.skipped) == 1
    assert not list(out.glob("sources/*.partial"))
    clean = tmp_path / "clean"
    run_ingest([inputs], clean, data, ingest, progress=False)
    assert _tree(out) == _tree(clean)


def test_two_workers_write_identical_shards(tmp_path, tiny_cfg, clips):
    inputs = _three_clips(tmp_path / "in", clips, tiny_cfg.data.channels)
    (inputs / "broken.mp4").write_bytes(b"\0" * 1000)
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run_ingest([inputs], one, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    ingest2 = tiny_cfg.ingest.model_copy(update={"workers": 2})
    r2 = run_ingest([inputs], two, tiny_cfg.data, ingest2, progress=False)
    assert sorted(r1.ok) == sorted(r2.ok) and len(r1.ok) == 3
    assert r1.failed == r2.failed and len(r1.failed) == 1
    assert _tree(one) == _tree(two)


def test_peak_memory_does_not_grow_with_length(tmp_path, clips):
    channels = ["belt_speed", "motor_current", "vibration_rms"]
    channels += ["glue_pressure", "photo_eye_count", "feeder_setpoint"]
    peaks = {}
    # 128 px at 60 fps: the long run writes 118 MB of frames, the short one 12 MB
    sets = {"data": {"fps": 60.0, "image_size": 128}}
    for name, seconds in [("short", 4), ("long", 40)]:
        folder = tmp_path / name
        video = clips.video(folder / f"{name}.mp4", seconds * 60, 60.0, 160, 120)
        clips.csv(video.with_suffix(".csv"), np.arange(0, seconds, 0.01), channels)
        proc = _ingest_subprocess(folder, tmp_path / f"out_{name}", sets)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        peaks[name] = json.loads(stdout)
        assert not peaks[name]["failed"] and peaks[name]["frames"] == seconds * 60
    growth_mb = (peaks["long"]["peak"] - peaks["short"]["peak"]) / 1024
    print("peak RSS KiB", peaks)
    assert growth_mb < 30, peaks
    # and the ingest itself (above the imported interpreter) stays small
    assert (peaks["long"]["peak"] - peaks["long"]["base"]) / 1024 < 100, peaks


def test_progress_bar_and_exclusive_lock(tmp_path, tiny_cfg, clips, capsys):

    inputs = _three_clips(tmp_path / "in", clips, tiny_cfg.data.channels)
    out = tmp_path / "out"
    ingest2 = tiny_cfg.ingest.model_copy(update={"workers": 2, "chunk_frames": 4})
    report = run_ingest([inputs], out, tiny_cfg.data, ingest2, progress=True)
    assert len(report.ok) == 3
    err = capsys.readouterr().err
    assert "ingest: 100%" in err and "90/90" in err
    with (out / ".ingest.lock").open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(InputError, match="another ingest is writing"):
            run_ingest([inputs], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
