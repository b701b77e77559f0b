"""The simulated camera's live stream looks exactly like the line's recorded footage."""

from __future__ import annotations

import cv2
import numpy as np

from foresight.config import load_config
from foresight.sim.camera import GOP, CodecStream
from foresight.sim.generate import simulate_to_dir
from foresight.sim.line import LineSim


def test_live_frames_are_the_recorded_frames(tmp_path):
    sim = load_config(preset="tiny", environ={}).sim.model_copy(
        update={"clip_seconds": 4.0, "seed": 3}
    )
    simulate_to_dir(sim, tmp_path, hours=4.0 / 3600, progress=False)
    n = int(4.0 * sim.fps)
    live = CodecStream(LineSim(sim, horizon_s=4.0), sim.fps)
    bare = LineSim(sim, horizon_s=4.0)
    cap = cv2.VideoCapture(str(tmp_path / "clip_0000.mp4"))
    codec_diff, bare_diff, times = [], [], []
    for _ in range(n):
        ok, rec = cap.read()
        assert ok
        rec = cv2.cvtColor(rec, cv2.COLOR_BGR2RGB).astype(np.float32)
        f, b = live.step(), bare.step()
        times.append((f.t, b.t))
        codec_diff.append(np.abs(f.frame.astype(np.float32) - rec).mean())
        bare_diff.append(np.abs(b.frame.astype(np.float32) - rec).mean())
    cap.release()
    assert n > 2 * GOP and all(a == b for a, b in times)
    assert max(codec_diff) < 0.05  # the same encoder, the same groups: the same pictures
    assert np.mean(bare_diff) > 1.0  # without it the picture differs (camera noise, blocks)
    assert live.good_cartons == live.line.good_cartons  # the line shows through
    live.close()
