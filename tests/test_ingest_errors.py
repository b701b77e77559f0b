"""Bad inputs: each fails alone with one clear line, and nothing of it reaches the shards."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from foresight.ingest import run_ingest

GOOD_T = np.arange(0.0, 3.0, 0.1)


def _patch_avi_rate(path, rate):
    """Rewrite an AVI's stream rate (strh dwScale/dwRate) and zero the main header's period."""
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8, 0)
    struct.pack_into("<II", data, strh + 8 + 20, 1, rate)
    path.write_bytes(bytes(data))


def _cell(row, col, text):
    def edit(rows):
        rows[row][col] = text

    return edit


def _bad_csv(edit=None, times=GOOD_T):
    def make(video, clips, channels):
        clips.csv(video.with_suffix(".csv"), times, channels, edit)

    return make


def _write(text):
    def make(video, clips, channels):
        video.with_suffix(".csv").write_text(text)

    return make


def _swap_times(rows):
    rows[5][0], rows[6][0] = rows[6][0], rows[5][0]


# name, how to spoil it (after a good 30-frame 10 fps video + no CSV was written), words expected
CASES = [
    ("garbage", lambda v, c, ch: v.write_bytes(b"not a video" * 50), ["bad.", "cannot open"]),
    ("zero_bytes", lambda v, c, ch: v.write_bytes(b""), ["bad.", "cannot open"]),
    ("no_frames", "no_frames", ["bad.avi", "no frames"]),
    ("truncated", "truncated", ["bad.avi", "truncated", "of the 200 frames"]),
    ("no_fps", "no_fps", ["bad.avi", "frame rate", "1e+07 fps"]),
    (
        "missing_columns",
        lambda v, c, ch: c.csv(v.with_suffix(".csv"), GOOD_T, [x for x in ch if "glue" not in x]),
        ["bad.csv", "missing sensor columns: glue_pressure"],
    ),
    ("non_numeric", _bad_csv(_cell(3, 2, "abc")), ["bad.csv", "row 3", "'motor_current'", "'abc'"]),
    ("nan", _bad_csv(_cell(4, 1, "nan")), ["bad.csv", "row 4", "'belt_speed'", "NaN or infinite"]),
    ("inf", _bad_csv(_cell(2, 0, "inf")), ["bad.csv", "row 2", "'t'", "NaN or infinite"]),
    ("non_monotonic", _bad_csv(_swap_times), ["bad.csv", "row 6", "not increasing"]),
    (
        "too_long_csv",
        _bad_csv(times=np.arange(0.0, 10.0, 0.5)),
        ["bad.", "3.00 s", "t=9.50 s", "bad.csv"],
    ),
    ("empty_csv", _write(""), ["bad.csv", "empty CSV"]),
    ("header_only", _write("t,a\n"), ["bad.csv", "missing sensor columns"]),
    ("header_no_rows", "header_no_rows", ["bad.csv", "no data rows"]),
    ("first_not_t", _write("time,a\n0,1\n"), ["bad.csv", "first column must be 't'"]),
    ("roi_outside", "roi", ["bad.", "ROI", "outside the 96x72 frame"]),
    ("no_csv_required", "require", ["bad.", "no sensor CSV", "require_sensors"]),
]


def _spoil(kind, video, clips, channels):
    """Spoilers needing more than a lambda; returns (video path, ingest overrides)."""
    if kind in ("no_frames", "truncated", "no_fps"):
        video.unlink()  # replaced by an AVI
    if kind == "no_frames":
        avi = video.with_suffix(".avi")
        clips.video(avi, 0, 10.0, fourcc="MJPG")
        return avi, {}
    if kind == "truncated":
        avi = clips.video(video.with_suffix(".avi"), 200, 10.0, fourcc="MJPG")
        avi.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
        return avi, {}
    if kind == "no_fps":
        avi = clips.video(video.with_suffix(".avi"), 30, 10.0, fourcc="MJPG")
        _patch_avi_rate(avi, 10**7)
        return avi, {}
    if kind == "header_no_rows":
        clips.csv(video.with_suffix(".csv"), [], channels)
        return video, {}
    if kind == "roi":
        return video, {"roi": (50, 10, 60, 20)}
    if kind == "require":
        return video, {"require_sensors": True}
    raise AssertionError(kind)


@pytest.mark.parametrize(("case", "spoil", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_alone(tmp_path, tiny_cfg, clips, case, spoil, words):
    channels = tiny_cfg.data.channels
    inputs = tmp_path / "in"
    good = clips.video(inputs / "good.mp4", 29, 10.0)  # content differs from bad.mp4
    clips.csv(good.with_suffix(".csv"), GOOD_T, channels)
    bad = clips.video(inputs / "bad.mp4", 30, 10.0)
    overrides = {}
    if isinstance(spoil, str):
        bad, overrides = _spoil(spoil, bad, clips, channels)
    else:
        spoil(bad, clips, channels)
    if "roi" in overrides:  # the ROI applies to every file: the good one is larger
        good = clips.video(inputs / "good.mp4", 30, 10.0, width=128, height=96)
    ingest = tiny_cfg.ingest.model_copy(update=overrides)
    out = tmp_path / "out"
    report = run_ingest([inputs], out, tiny_cfg.data, ingest, progress=False)

    assert report.ok == [good.resolve()]
    assert [p for p, _ in report.failed] == [bad.resolve()]
    message = report.failed[0][1]
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["sources"]] == ["good.mp4"]
    assert manifest["failures"] == [{"path": str(bad.resolve()), "error": message}]
    assert sorted(p.name for p in (out / "sources").iterdir()) == [manifest["sources"][0]["id"]]
    assert f"failed: {message}" in report.describe()


def test_failure_is_cleared_once_fixed(tmp_path, tiny_cfg, clips):
    video = clips.video(tmp_path / "in" / "a.mp4", 30, 10.0)
    clips.csv(video.with_suffix(".csv"), GOOD_T, tiny_cfg.data.channels, _cell(2, 3, "x"))
    out = tmp_path / "out"
    assert run_ingest([video], out, tiny_cfg.data, tiny_cfg.ingest, False).failed
    clips.csv(video.with_suffix(".csv"), GOOD_T, tiny_cfg.data.channels)
    report = run_ingest([video], out, tiny_cfg.data, tiny_cfg.ingest, False)
    assert report.ok == [video.resolve()] and not report.failed
    assert json.loads((out / "manifest.json").read_text())["failures"] == []
