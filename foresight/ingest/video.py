"""Decode one video, crop, resize and resample it in time, streaming chunks of frames to a file.

Output frame ``k`` (time ``k / fps``) takes the source frame nearest in time, source frame ``i``
lying at ``i / src_fps`` (ties go to the later frame). A video of ``n`` decoded frames lasts
``n / src_fps`` seconds and yields every ``k`` with ``k / fps`` inside that span. Frames no output
needs are only grabbed, never converted.

The optional ROI ``(x, y, w, h)`` in source pixels is cropped first; the crop is then resized to
``image_size`` x ``image_size`` with ``cv2.INTER_AREA`` without keeping its aspect ratio, so the ROI
is what controls the aspect (choose a square ROI to avoid stretching).

A video counts as truncated when decoding stops more than ``max(3 frames, 1 %)`` short of the
frame count its container declares; containers that declare no count are not checked. The frame
rate is undeterminable when OpenCV reports none, a non-finite one or more than 1000 fps (a time
base, not a rate). FFmpeg itself assumes 25 fps for raw streams without timing; that cannot be
told apart from a real 25 fps stream.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from foresight.errors import InputError

log = logging.getLogger(__name__)

# FFmpeg's own decoder chatter would break the one-line-per-failure output; our errors say what
# failed. Set OPENCV_FFMPEG_LOGLEVEL=24 (warnings) before running to see FFmpeg's messages.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
TRUNCATION_TOLERANCE_FRAMES = 3
TRUNCATION_TOLERANCE_FRACTION = 0.01
MAX_PLAUSIBLE_FPS = 1000.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video."""

    fps: float
    width: int
    height: int
    container_frames: int | None  # None when the container declares no usable count

    def output_frames(self, fps: float, decoded: int | None = None) -> int:
        """Output frames at ``fps`` for ``decoded`` source frames (default: the declared count)."""
        n = self.container_frames if decoded is None else decoded
        if not n:
            return 0
        ratio = self.fps / fps
        return math.ceil(n / ratio - 1e-9)


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open ``path`` with OpenCV and read its rate and size; ``InputError`` if it is unusable."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: cannot open as a video (corrupt or unsupported container)")
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if not math.isfinite(fps) or fps <= 0 or fps > MAX_PLAUSIBLE_FPS:
        cap.release()
        raise InputError(f"{path}: cannot determine the frame rate (container reports {fps:g} fps)")
    if width <= 0 or height <= 0:
        cap.release()
        raise InputError(f"{path}: cannot determine the frame size (no decodable video stream)")
    frames = int(count) if math.isfinite(count) and 0 < count < 2**40 else None
    return cap, VideoInfo(fps=fps, width=width, height=height, container_frames=frames)


def fit_frame(
    frame_bgr: np.ndarray, size: int, roi: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """One camera frame as the model sees it: ROI crop, INTER_AREA resize to a square, RGB
    (the rule ``decode_to_file`` applies; replay and the live monitor call this)."""
    if roi is not None:
        x, y, w, h = roi
        frame_bgr = frame_bgr[y : y + h, x : x + w]
    small = cv2.resize(frame_bgr, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def probe_output_frames(path: Path, fps: float) -> int:
    """Estimated output frames of a video at ``fps`` from its container (0 if unknown)."""
    try:
        cap, info = open_video(path)
    except InputError:
        return 0
    cap.release()
    return info.output_frames(fps)


def check_roi(path: Path, roi: tuple[int, int, int, int] | None, info: VideoInfo) -> None:
    """Raise ``InputError`` naming ``path`` unless the ROI lies inside the frame."""
    if roi is None:
        return
    x, y, w, h = roi
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > info.width or y + h > info.height:
        raise InputError(
            f"{path}: ROI x={x} y={y} w={w} h={h} lies outside the {info.width}x{info.height} frame"
        )


class _ChunkWriter:
    """Collects output frames in one preallocated chunk and writes it to ``fh`` when full."""

    def __init__(
        self, fh: BinaryIO, frames: int, size: int, on_progress: Callable[[int], None] | None
    ) -> None:
        self.fh, self.on_progress = fh, on_progress
        self.chunk = np.empty((frames, size, size, 3), np.uint8)
        self.filled = self.written = 0

    def put(self, frame: np.ndarray) -> None:
        """Append one output frame."""
        self.chunk[self.filled] = frame
        self.filled += 1
        self.written += 1
        if self.filled == len(self.chunk):
            self.flush()

    def flush(self) -> None:
        """Write the buffered frames and report them."""
        if self.filled:
            self.fh.write(memoryview(self.chunk[: self.filled]).cast("B"))
            if self.on_progress is not None:
                self.on_progress(self.filled)
            self.filled = 0


def decode_to_file(
    path: Path,
    cap: cv2.VideoCapture,
    info: VideoInfo,
    *,
    fh: BinaryIO,
    size: int,
    fps: float,
    roi: tuple[int, int, int, int] | None,
    chunk_frames: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write the resampled RGB frames to ``fh`` chunk by chunk; returns (decoded, written).

    Memory: one chunk of ``chunk_frames`` output frames, one output frame and one resize
    scratch frame, plus whatever the decoder holds; nothing grows with the video's length.
    """
    x, y, w, h = roi if roi is not None else (0, 0, info.width, info.height)
    ratio = info.fps / fps  # source frames per output frame
    out = _ChunkWriter(fh, chunk_frames, size, on_progress)
    scratch = np.empty((size, size, 3), np.uint8)
    current = np.empty((size, size, 3), np.uint8)
    n = 0
    while cap.grab():
        i, n = n, n + 1
        if out.written * ratio >= i + 1:  # no output frame is nearest to (or, at the end, in) i
            continue
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            n = i
            break
        if frame.shape[:2] != (info.height, info.width):
            raise InputError(
                f"{path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                f"expected {info.width}x{info.height} (size changes mid-stream)"
            )
        cv2.resize(frame[y : y + h, x : x + w], (size, size), scratch, 0, 0, cv2.INTER_AREA)
        cv2.cvtColor(scratch, cv2.COLOR_BGR2RGB, current)
        while math.floor(out.written * ratio + 0.5) <= i:
            out.put(current)
    if n == 0:
        raise InputError(f"{path}: no frames could be decoded (corrupt or empty video stream)")
    while out.written * ratio < n:  # output times in the last frame's span, nearest to frame n
        out.put(current)
    out.flush()
    check_truncation(path, info, n)
    return n, out.written


def check_truncation(path: Path, info: VideoInfo, decoded: int) -> None:
    """Raise ``InputError`` if decoding stopped well short of the container's frame count."""
    declared = info.container_frames
    if declared is None:
        return
    tolerance = max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_FRACTION * declared)
    if decoded < declared - tolerance:
        raise InputError(
            f"{path}: truncated video: decoding stopped after {decoded} of the {declared} frames "
            f"the container declares ({decoded / info.fps:.2f} s of {declared / info.fps:.2f} s)"
        )
    if decoded != declared:
        log.debug("%s: decoded %d frames, container declares %d", path, decoded, declared)
