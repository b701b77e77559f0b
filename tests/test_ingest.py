"""Ingest happy paths: resampling in space and time, sensor interpolation, manifest, ROI, labels."""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.ingest import ShardDataset, run_ingest


def nearest(k: int, src_fps: float, fps: float, n: int) -> int:
    """The source frame output frame k should show."""
    return min(math.floor(k * src_fps / fps + 0.5), n - 1)


def frames_of(out, record, size):
    raw = np.fromfile(out / record["dir"] / "frames.u8", np.uint8)
    return raw.reshape(record["frames"], size, size, 3)


def sensors_of(out, record, width):
    raw = np.fromfile(out / record["dir"] / "sensors.f32", "<f4")
    return raw.reshape(record["frames"], width)


def by_name(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest, {s["name"]: s for s in manifest["sources"]}


@pytest.mark.parametrize(
    ("name", "src_fps", "n", "fourcc"),
    [("down.mp4", 30.0, 90, "mp4v"), ("odd.avi", 25.0, 60, "MJPG"), ("up.avi", 5.0, 10, "MJPG")],
)
def test_resamples_space_and_time(tmp_path, tiny_cfg, clips, name, src_fps, n, fourcc):
    video = clips.video(tmp_path / "in" / name, n, src_fps, 96, 72, fourcc)
    out = tmp_path / "out"
    report = run_ingest([video], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    assert report.ok == [video] and not report.failed
    _, records = by_name(out)
    rec = records[name]
    fps, size = tiny_cfg.data.fps, tiny_cfg.data.image_size
    expected_n = math.ceil(n * fps / src_fps - 1e-9)
    assert rec["frames"] == expected_n
    frames = frames_of(out, rec, size)
    want = [nearest(k, src_fps, fps, n) for k in range(expected_n)]
    assert [clips.index(f) for f in frames] == want
    # bottom-left is red, bottom-right blue in RGB order
    assert np.abs(frames[:, 26, 4].astype(int) - (255, 0, 0)).max() < 40
    assert np.abs(frames[:, 26, 28].astype(int) - (0, 0, 255)).max() < 40
    assert not rec["has_sensors"] and np.isnan(sensors_of(out, rec, 6)).all()


def test_manifest_fields_and_sensor_interpolation(tmp_path, tiny_cfg, clips):
    channels = tiny_cfg.data.channels
    video = clips.video(tmp_path / "in" / "clip_0000.mp4", 90, 30.0)
    times = np.arange(0.0, 3.01, 0.25)
    clips.csv(video.with_suffix(".csv"), times, [*channels, "operator_note"])
    out = tmp_path / "out"
    report = run_ingest([tmp_path / "in"], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    assert len(report.ok) == 1 and report.frames == 30 and report.windows == 2
    manifest, records = by_name(out)
    assert manifest["format"] == "foresight-shards/1"
    assert manifest["data"] == {
        "image_size": 32,
        "fps": 10.0,
        "channels": list(channels),
        "window": 16,
        "stride": 8,
    }
    rec = records["clip_0000.mp4"]
    sha = hashlib.sha256(video.read_bytes()).hexdigest()
    assert rec["id"] == sha[:16] and rec["sha256"] == sha and rec["dir"] == f"sources/{sha[:16]}"
    assert rec["bytes"] == video.stat().st_size and rec["path"] == str(video.resolve())
    assert (rec["src_fps"], rec["src_width"], rec["src_height"], rec["src_frames"]) == (
        30.0,
        96,
        72,
        90,
    )
    assert (rec["frames"], rec["windows"], rec["has_sensors"]) == (30, 2, True)
    meta = json.loads((out / rec["dir"] / "meta.json").read_text())
    assert meta["sha256"] == sha and meta["files"]["frames.u8"]["shape"] == [30, 32, 32, 3]
    assert not list((out / "sources").glob("*.partial"))
    sensors = sensors_of(out, rec, len(channels))
    t_out = np.arange(30) / 10.0
    for j in range(len(channels)):
        want = np.interp(t_out, times, clips.value(times, j))
        np.testing.assert_allclose(sensors[:, j], want, rtol=1e-5, atol=1e-5)


def test_sensors_hold_before_first_row(tmp_path, tiny_cfg, clips):
    video = clips.video(tmp_path / "late.mp4", 30, 10.0)
    times = np.arange(0.5, 3.01, 0.5)
    clips.csv(video.with_suffix(".csv"), times, tiny_cfg.data.channels)
    out = tmp_path / "out"
    run_ingest([video], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    sensors = sensors_of(out, by_name(out)[1]["late.mp4"], 6)
    assert np.allclose(sensors[:5, 2], clips.value(0.5, 2))
    assert np.allclose(
        sensors[5:, 2], np.interp(np.arange(5, 30) / 10, times, clips.value(times, 2))
    )


def test_roi_crops_before_resizing(tmp_path, tiny_cfg, clips):
    video = clips.video(tmp_path / "roi.mp4", 30, 10.0)
    out = tmp_path / "red"
    ingest = tiny_cfg.ingest.model_copy(update={"roi": (4, 40, 40, 28)})  # inside the red part
    run_ingest([video], out, tiny_cfg.data, ingest, progress=False)
    rec = by_name(out)[1]["roi.mp4"]
    frames = frames_of(out, rec, 32)
    assert rec["roi"] == [4, 40, 40, 28]
    assert np.abs(frames[:, 4:28, 4:28].astype(int) - (255, 0, 0)).max() < 40
    out = tmp_path / "top"
    ingest = tiny_cfg.ingest.model_copy(update={"roi": (0, 0, 96, 36)})  # just the digit blocks
    run_ingest([video], out, tiny_cfg.data, ingest, progress=False)
    frames = frames_of(out, by_name(out)[1]["roi.mp4"], 32)
    assert [clips.index(f, top=1.0) for f in frames] == list(range(30))


def test_short_source_has_no_windows(tmp_path, tiny_cfg, clips, caplog):
    video = clips.video(tmp_path / "short.mp4", 10, 10.0)
    with caplog.at_level(logging.WARNING):
        report = run_ingest([video], tmp_path / "out", tiny_cfg.data, tiny_cfg.ingest, False)
    assert report.ok == [video] and report.windows == 0
    assert by_name(tmp_path / "out")[1]["short.mp4"]["windows"] == 0
    assert "shorter than one window" in caplog.text


def test_labels_are_copied_and_referenced(tmp_path, tiny_cfg, clips):
    sim = tmp_path / "sim"
    clips.video(sim / "clip_0000.mp4", 20, 10.0)
    clips.video(sim / "clip_0001.mp4", 20, 10.0, width=64, height=48)
    (sim / "labels.json").write_text('{"clip_0000.mp4": []}')
    out = tmp_path / "out"
    run_ingest([sim], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    _, records = by_name(out)
    rels = {records[n]["labels"] for n in ("clip_0000.mp4", "clip_0001.mp4")}
    assert len(rels) == 1
    rel = rels.pop()
    assert rel.startswith("labels/") and (out / rel).read_text() == '{"clip_0000.mp4": []}'


def test_refuses_other_data_settings_and_missing_inputs(tmp_path, tiny_cfg, clips):
    video = clips.video(tmp_path / "a.mp4", 20, 10.0)
    out = tmp_path / "out"
    run_ingest([video], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    other = tiny_cfg.data.model_copy(update={"image_size": 48})
    with pytest.raises(InputError, match=r"manifest.json.*image_size=32.*image_size=48"):
        run_ingest([video], out, other, tiny_cfg.ingest, progress=False)
    with pytest.raises(InputError, match="nope.mp4: no such file"):
        run_ingest([tmp_path / "nope.mp4"], out, tiny_cfg.data, tiny_cfg.ingest, progress=False)
    # a new window/stride only recounts windows
    longer = tiny_cfg.data.model_copy(update={"window": 4, "stride": 4})
    report = run_ingest([video], out, longer, tiny_cfg.ingest, progress=False)
    assert report.skipped == [video]
    assert len(ShardDataset(out)) == 5
