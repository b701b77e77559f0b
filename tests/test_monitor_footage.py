"""The footage the monitor keeps: rolling archive of normal footage, evidence clips, live frame."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np

from foresight.dashboard.frames import read_latest
from foresight.monitor.config import FootageConfig
from foresight.monitor.footage import FootageKeeper, Kept
from foresight.retrain.config import RetrainConfig
from foresight.retrain.run import clip_span, select_footage

FPS = 10.0
T0 = 1_800_000_000 * 10**9  # wall clock of the first step, ns


def _keeper(tmp_path, **over):
    cfg = FootageConfig(**({"segment_s": 5.0, "guard_s": 3.0, "clip_before_s": 1.0,
                            "clip_after_s": 1.0} | over))  # fmt: skip
    return FootageKeeper(
        cfg, tmp_path / "archive", tmp_path / "clips", tmp_path / "live", FPS, ("a", "b"), "v1"
    )


def _step(i: int, normal: bool = True, onset: bool = False, t: float | None = None) -> Kept:
    raw = np.full((48, 80, 3), i % 250, np.uint8)  # camera frame as captured (BGR)
    frame = np.full((16, 16, 3), i % 250, np.uint8)
    t = i / FPS if t is None else t
    return Kept(T0 + int(t * 1e9), t, raw, frame, np.array([i, -i], np.float32), normal, onset)


def _segments(tmp_path):
    return sorted((tmp_path / "archive").glob("*.json"), key=lambda p: int(p.stem))


def test_archive_keeps_whole_normal_segments_after_their_guard(tmp_path):
    k = _keeper(tmp_path)
    for i in range(120):  # 12 s normal: segments [0, 5) and [5, 10)
        k.add(_step(i))
    # [0, 5) has had 3 s of normal after it (at 8 s); [5, 10) has not (its guard ends at 13 s).
    segs = _segments(tmp_path)
    assert [int(p.stem) for p in segs] == [T0]
    side = json.loads(segs[0].read_text())
    assert side == {"start_ns": T0, "fps": FPS, "frames": 50, "model": "v1"}
    cap = cv2.VideoCapture(str(segs[0].with_suffix(".mp4")))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 50
    ok, img = cap.read()
    assert ok and img.shape == (48, 80, 3)  # as captured, not the model's crop
    cap.release()
    rows = list(csv.reader(segs[0].with_suffix(".csv").open()))
    assert rows[0] == ["t", "a", "b"] and len(rows) == 51 and float(rows[2][0]) == 0.1
    # An alarm at 12 s: [5, 10) is inside the guard before it (a possible precursor): deleted,
    # as is the segment in progress. Nothing half-written is visible at any time.
    k.add(_step(120, normal=False, onset=True))
    for i in range(121, 125):
        k.add(_step(i, normal=False))
    k.close()
    assert [int(p.stem) for p in _segments(tmp_path)] == [T0]
    assert not list((tmp_path / "archive" / ".partial").iterdir())
    assert k.counts["segments"] == 1 and k.counts["discarded"] == 2
    # The alarm's evidence clip: 1 s before, 1 s after (cut short by close), named by its onset.
    clips = list((tmp_path / "clips").glob("*.webm"))
    assert [p.stem for p in clips] == [str(T0 + 12 * 10**9)]
    cap = cv2.VideoCapture(str(clips[0]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10 + 5  # 10 before (the ring), the onset, 4 after before close


def test_a_gap_ends_the_segment_and_short_ones_are_dropped(tmp_path):
    k = _keeper(tmp_path, guard_s=0.0)
    for i in range(30):  # 3 s, then the model skips 1 s of ticks
        k.add(_step(i))
    for i in range(40, 100):  # 6 s after the gap
        k.add(_step(i))
    k.close()
    segs = _segments(tmp_path)
    assert [json.loads(p.read_text())["frames"] for p in segs] == [50]
    assert int(segs[0].stem) == T0 + 4 * 10**9  # the 3 s before the gap: too short, dropped


def test_retention_drops_the_oldest_and_retrain_reads_the_archive(tmp_path):
    k = _keeper(tmp_path, guard_s=0.0)
    for i in range(200):  # four 5-s segments
        k.add(_step(i))
    segs = _segments(tmp_path)
    assert len(segs) == 4
    one = sum(f.stat().st_size for f in segs[0].parent.glob(f"{segs[0].stem}.*"))
    k.cfg = k.cfg.model_copy(update={"archive_gb": 2.5 * one / 1e9})
    for i in range(200, 250):
        k.add(_step(i))
    kept = _segments(tmp_path)
    assert [int(p.stem) for p in kept] == [T0 + 15 * 10**9, T0 + 20 * 10**9]
    assert k.counts["pruned"] == 3
    # retrain finds them, in time order, with their spans from the sidecar
    train, hold, notes = select_footage(tmp_path / "archive", RetrainConfig(), [])
    assert [p.stem for p in train + hold] == [p.stem for p in kept] and notes["untimed_clips"] == 0
    start, end = clip_span(kept[0].with_suffix(".mp4"))
    assert start == T0 + 15 * 10**9 and abs((end - start) / 1e9 - 5.0) < 0.2


def test_live_frame_is_published_with_what_was_expected(tmp_path):
    k = _keeper(tmp_path, archive=False, clips=False)
    step = _step(3)
    step.expected = np.full((16, 16, 3), 0.5, np.float32)
    step.heatmap = np.arange(4, dtype=np.float32).reshape(2, 2)
    step.meta = {"state": "normal", "score": 1.5}
    k.add(step)
    live = read_latest(tmp_path / "live")
    assert live.frame.shape == (16, 16, 3) and int(live.predicted[0, 0, 0]) == 128
    assert live.heatmap.shape == (2, 2) and live.meta["score"] == 1.5
    assert not (tmp_path / "archive").exists() and not (tmp_path / "clips").exists()
