"""``foresight replay``: run the monitor's exact pipeline over a recording, as fast as it can.

Input: a video OpenCV opens (any resolution, any frame rate), optionally with a sensor CSV (first
column ``t`` in seconds since the start of the video, one numeric column per channel; a CSV beside
the video with the same stem is picked up automatically). Frames are cropped (the ROI the model
was trained with), resized and resampled to the model's rate with the same nearest-frame rule as
``foresight ingest``; sensors are interpolated to the model's instants the same way.

Output: one JSON object per input frame (``t``, ``score``, ``state``, ``alarm`` and the details of
``StepOutput.record``; ``model_step`` is false on frames the model's rate skips, which carry the
current state). The file is written to a temporary name and renamed at the end, so a failed replay
leaves nothing half-written behind.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from foresight.errors import InputError
from foresight.ingest.sensors import check_header, resample_csv
from foresight.ingest.video import check_roi, fit_frame, open_video
from foresight.model.checkpoint import load_model
from foresight.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did."""

    out: Path
    input_frames: int
    model_steps: int
    alarms: int  # slow-down onsets
    health_faults: int  # health-fault onsets
    seconds: float

    def describe(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.out}: {self.input_frames} input frames, {self.model_steps} model steps "
            f"({self.seconds:.1f} s of footage), {self.alarms} slow-down(s), "
            f"{self.health_faults} health fault(s)"
        )


def model_frames(
    path: Path, size: int, fps: float, roi: tuple[int, int, int, int] | None
) -> Iterator[tuple[int, float, list[tuple[int, np.ndarray]]]]:
    """Per source frame: (index, time, [(model step, RGB frame size x size)]) in time order.

    Model step ``k`` (time ``k / fps``) takes the nearest source frame, like ``foresight ingest``.
    """
    cap, info = open_video(path)
    try:
        check_roi(path, roi, info)
        ratio = info.fps / fps
        k = 0
        i = -1
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            i += 1
            if frame.shape[:2] != (info.height, info.width):
                raise InputError(f"{path}: frame {i} changes size mid-stream")
            ticks, fitted = [], None
            while math.floor(k * ratio + 0.5) <= i:
                fitted = fit_frame(frame, size, roi) if fitted is None else fitted
                ticks.append((k, fitted))
                k += 1
            yield i, i / info.fps, ticks
        if i < 0:
            raise InputError(f"{path}: no frames could be decoded (corrupt or empty video stream)")
    finally:
        cap.release()


def read_sensors(path: Path, channels: tuple[str, ...], fps: float, steps: int) -> np.ndarray:
    """The CSV's channels at the model's instants, (steps, S); model channels absent are NaN."""
    try:
        with path.open(newline="") as f:
            header = [h.strip() for h in f.readline().strip().split(",")]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the CSV ({e})") from None
    present = [c for c in channels if c in header]
    if not present:
        raise InputError(
            f"{path}: none of the model's sensor columns ({', '.join(channels)}) is in the CSV"
        )
    missing = [c for c in channels if c not in present]
    if missing:
        log.warning("%s: no column for %s; the model runs without them", path, ", ".join(missing))
    check_header(path, present)
    buf = io.BytesIO()
    resample_csv(path, present, fps, steps, buf)
    got = np.frombuffer(buf.getvalue(), np.float32).reshape(steps, len(present))
    out = np.full((steps, len(channels)), np.nan, np.float32)
    for j, c in enumerate(present):
        out[:, channels.index(c)] = got[:, j]
    return out


def steps_for(video: Path, fps: float) -> int:
    """Model steps a video yields at ``fps`` (from its container)."""
    cap, info = open_video(video)
    cap.release()
    return max(info.output_frames(fps), 1)


def replay(
    model: Path,
    video: Path | None,
    out: Path,
    *,
    sensors: Path | None = None,
    progress: bool = True,
) -> ReplaySummary:
    """Replay a recording through the monitor's pipeline and write EVENTS.jsonl."""
    if video is None and sensors is None:
        raise InputError("replay needs a VIDEO, a --sensors CSV, or both")
    bundle = load_model(model)
    bundle.card.setdefault("path", str(model))
    pipe = Pipeline(bundle)
    fps, channels = pipe.fps, pipe.channels
    if video is None:
        raise InputError(
            f"{model}: this model watches video; give the VIDEO (sensor-only replay needs a "
            "sensor-only model)"
        )
    video = Path(video)
    if not video.exists():
        raise InputError(f"{video}: no such file")
    if sensors is None and video.with_suffix(".csv").is_file():
        sensors = video.with_suffix(".csv")
        log.info("using sensors %s", sensors)
    steps = steps_for(video, fps) + 2
    raw = (
        read_sensors(Path(sensors), channels, fps, steps)
        if sensors is not None
        else np.full((steps, len(channels)), np.nan, np.float32)
    )
    roi = bundle.roi
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    counts = {"frames": 0, "steps": 0, "alarms": 0, "health": 0}
    try:
        with tmp.open("w") as fh, tqdm(desc="replay", unit="frame", disable=not progress) as bar:
            _run(pipe, video, raw, roi, fh, counts, bar)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ReplaySummary(
        out,
        counts["frames"],
        counts["steps"],
        counts["alarms"],
        counts["health"],
        counts["steps"] / fps,
    )


def _run(pipe: Pipeline, video: Path, raw: np.ndarray, roi, fh, counts: dict, bar) -> None:
    """Step the pipeline over the video and write one line per input frame."""
    size, fps = pipe.pred.image_size, pipe.fps
    last: dict[str, Any] | None = None
    was_alarm = was_health = False
    nan_row = np.full(raw.shape[1], np.nan, np.float32)
    for i, t, ticks in model_frames(video, size, fps, tuple(roi) if roi else None):
        for k, frame in ticks:
            out = pipe.step(frame, raw[k] if k < len(raw) else nan_row, k / fps)
            last = out.record(pipe.horizons)
            counts["steps"] += 1
            counts["alarms"] += int(out.alarm and not was_alarm)
            health = out.state == "health_fault"
            counts["health"] += int(health and not was_health)
            was_alarm, was_health = out.alarm, health
        line = (
            dict(last) if last is not None else {"score": None, "state": "normal", "alarm": False}
        )
        line.update(t=round(t, 4), frame=i, model_step=bool(ticks))
        fh.write(json.dumps(line) + "\n")
        counts["frames"] += 1
        bar.update(1)
