"""Automatic region of interest: the band where the line moves, found from normal footage."""

from __future__ import annotations

import json

import cv2
import numpy as np

from foresight.ingest import run_ingest
from foresight.ingest.roi import activity_roi, auto_roi, manifest_roi


def test_activity_band_is_padded_and_spans_the_still_axis():
    act = np.ones((128, 128), np.float32)
    act[40:60] = 20.0  # rows 40-59 move; every column alike
    # rows: 20 active, padded 0.3 * 20 = 6 each side -> 34..66 (32 rows, = the 1/4 minimum)
    assert activity_roi(act) == (0, 34, 128, 32)


def test_a_thin_band_grows_to_the_minimum_side_and_a_still_picture_is_not_cropped():
    act = np.ones((100, 200), np.float32)
    act[50:52, 20:180] = 30.0
    x, y, w, h = activity_roi(act)
    assert h == 25 and y <= 50 and y + h >= 52  # a quarter of the height, around the band
    assert (x, w) == (0, 200)  # column profile: 2 of 100 rows move, below MIN_CONTRAST
    assert activity_roi(np.ones((64, 64), np.float32)) is None
    full = np.ones((64, 64), np.float32)
    full[2:62, 2:62] = 9.0  # moving everywhere: no crop
    assert activity_roi(full) is None


def _belt_video(path, frames=60, size=128, band=(56, 76), hand_at=30):
    rng = np.random.default_rng(0)
    wall = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)  # static texture
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (size, size))
    for i in range(frames):
        img = wall.copy()
        y0, y1 = band
        for k in range(8):  # cartons moving right along the band
            x = (i * 3 + k * 18) % size
            img[y0 + 4 : y1 - 4, x : x + 10] = (30, 30, 200)
        if i == hand_at:  # one hand in one frame: rare, must not widen the crop
            img[0:50, 20:40] = 230
        vw.write(img)
    vw.release()


def test_ingest_crops_to_the_moving_band_and_records_it(tmp_path, tiny_cfg):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        _belt_video(src / f"clip_{k}.avi")
    roi = auto_roi(sorted(src.glob("*.avi")))
    assert roi is not None
    x, y, w, h = roi
    assert (x, w) == (0, 128) and y <= 56 and y + h >= 76 and h < 64  # band plus padding only
    ingest = tiny_cfg.ingest.model_copy(update={"roi": "auto"})
    out = tmp_path / "shards"
    report = run_ingest([src], out, tiny_cfg.data, ingest, progress=False)
    assert not report.failed
    assert manifest_roi(out) == roi
    rec = json.loads((out / "manifest.json").read_text())["sources"][0]
    assert rec["roi"] == list(roi)
    # more footage into the same shards keeps their crop, whatever it shows
    _belt_video(src / "clip_9.avi", band=(10, 30))
    run_ingest([src], out, tiny_cfg.data, ingest, progress=False)
    assert {
        tuple(s["roi"]) for s in json.loads((out / "manifest.json").read_text())["sources"]
    } == {roi}
