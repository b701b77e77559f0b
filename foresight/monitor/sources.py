"""Live frame sources of the monitor: the simulated line, a video file or stream, a USB camera.

Every source is an async iterator of ``Observation`` at the camera's own rate, already cropped and
resized to the model's input. Blocking OpenCV reads run in a worker thread so the event loop (and
the PLC heartbeat) never waits on a camera. File and simulated sources are paced to real time times
``speed`` (0 = as fast as they go); live streams are read as they come.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import cv2
import numpy as np

from foresight.errors import InputError
from foresight.ingest.video import fit_frame


class Observation(NamedTuple):
    """One camera frame with the sensors at its instant."""

    t: float  # seconds since the source started
    frame: np.ndarray  # (size, size, 3) RGB uint8
    sensors: np.ndarray  # (S,) float32, NaN where unknown
    line_state: str | None  # from the source itself (the simulator), else None
    raw: np.ndarray | None = None  # the camera frame as captured (BGR), for the footage keeper


class Pacer:
    """Sleeps so that source time advances at ``speed`` times real time."""

    def __init__(self, speed: float):
        self.speed = speed
        self.start = time.monotonic()

    async def wait(self, t: float) -> None:
        """Wait until source time ``t`` is due."""
        if self.speed <= 0:
            await asyncio.sleep(0)
            return
        delay = self.start + t / self.speed - time.monotonic()
        await asyncio.sleep(max(delay, 0.0))


async def sim_source(line: Any, size: int, speed: float, roi=None) -> AsyncIterator[Observation]:
    """The simulated line, live: one observation per camera frame, cropped to the model's
    ``roi`` and resized exactly as footage is (``fit_frame``)."""
    pacer = Pacer(speed)
    while True:
        f = line.step()
        await pacer.wait(f.t)
        bgr = cv2.cvtColor(f.frame, cv2.COLOR_RGB2BGR)
        sensors = np.asarray(f.sensors, np.float32)
        yield Observation(f.t, fit_frame(bgr, size, roi), sensors, f.state, bgr)


async def video_source(
    spec: str,
    size: int,
    speed: float,
    roi=None,
    sensors: np.ndarray | None = None,
    sensor_fps: float = 10.0,
    n_sensors: int = 0,
) -> AsyncIterator[Observation]:
    """A video file, a network stream or a USB camera (``spec`` is a number).

    Without ``sensors`` (a CSV replay) each observation carries ``n_sensors`` NaNs: unknown until
    a PLC subscription (``foresight.monitor.plc_sensors``) fills them in.
    """
    target: Any = int(spec) if spec.isdigit() else spec
    cap = await asyncio.to_thread(cv2.VideoCapture, target)
    if not cap.isOpened():
        raise InputError(f"{spec}: cannot open the camera or video source")
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    live = isinstance(target, int) or "://" in str(target)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0
    pacer = Pacer(0.0 if live else speed)
    started = time.monotonic()
    width = n_sensors if sensors is None else sensors.shape[1]
    i = 0
    try:
        while True:
            ok, frame = await asyncio.to_thread(cap.read)
            if not ok or frame is None:
                return
            t = (time.monotonic() - started) if live else i / fps
            await pacer.wait(t)
            if sensors is not None and len(sensors):
                row = sensors[min(int(round(t * sensor_fps)), len(sensors) - 1)]
            else:
                row = np.full(width, np.nan, np.float32)
            yield Observation(t, fit_frame(frame, size, roi), row, None, frame)
            i += 1
    finally:
        cap.release()
