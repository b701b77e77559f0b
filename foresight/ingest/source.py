"""Ingest one source (video + optional CSV) into ``sources/<id>.partial/``, then rename it complete.

Order of work, cheapest checks first: open the video (rate, size), check the ROI and the CSV
header, decode the frames to ``frames.u8``, parse the CSV into ``sensors.f32``, compare the video
and CSV durations, write ``meta.json``, sync and rename. Any failure deletes the partial directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foresight.errors import InputError
from foresight.ingest.config import DataConfig, IngestConfig
from foresight.ingest.layout import (
    FRAMES_FILE,
    META_FILE,
    PARTIAL_SUFFIX,
    SENSOR_DTYPE,
    SENSORS_FILE,
    SOURCES_DIR,
    window_count,
    write_json_atomic,
)
from foresight.ingest.sensors import check_header, resample_csv, write_nan
from foresight.ingest.video import VideoInfo, check_roi, decode_to_file, open_video

log = logging.getLogger(__name__)

SOURCE_FORMAT = "foresight-source/1"


@dataclass(frozen=True)
class SourceTask:
    """Everything a worker needs to ingest one video (picklable)."""

    index: int
    path: Path
    csv: Path | None
    sha256: str
    bytes: int
    labels: str | None  # path of the copied label file, relative to the output directory


def source_id(sha256: str) -> str:
    """Directory name of a source: the first 16 hex digits of its content hash."""
    return sha256[:16]


def ingest_source(
    task: SourceTask,
    out: Path,
    data: DataConfig,
    ingest: IngestConfig,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write one complete source directory and return its manifest record (raises InputError)."""
    sid = source_id(task.sha256)
    final = out / SOURCES_DIR / sid
    partial = out / SOURCES_DIR / (sid + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        record = _write_source(task, partial, data, ingest, on_progress)
        _fsync_dir(partial)
        os.rename(partial, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record["windows"] = window_count(record["frames"], data.window, data.stride)
    if record["windows"] == 0:
        log.warning(
            "%s: %d frames is shorter than one window (%d frames): ingested with 0 windows",
            task.path,
            record["frames"],
            data.window,
        )
    return record


def _write_source(
    task: SourceTask,
    partial: Path,
    data: DataConfig,
    ingest: IngestConfig,
    on_progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    path = task.path
    if task.csv is None and ingest.require_sensors:
        raise InputError(
            f"{path}: no sensor CSV {path.with_suffix('.csv').name} beside it "
            "(ingest.require_sensors is on)"
        )
    cap, info = open_video(path)
    try:
        check_roi(path, ingest.roi, info)
        if task.csv is not None:
            check_header(task.csv, data.channels)
        with (partial / FRAMES_FILE).open("wb") as fh:
            decoded, frames = decode_to_file(
                path,
                cap,
                info,
                fh=fh,
                size=data.image_size,
                fps=data.fps,
                roi=ingest.roi,
                chunk_frames=ingest.chunk_frames,
                on_progress=on_progress,
            )
            _sync(fh)
    finally:
        cap.release()
    with (partial / SENSORS_FILE).open("wb") as fh:
        if task.csv is not None:
            summary = resample_csv(task.csv, data.channels, data.fps, frames, fh)
            _check_lengths(path, task.csv, decoded / info.fps, summary.t_last, ingest)
        else:
            write_nan(fh, frames, len(data.channels))
        _sync(fh)
    record = _record(task, info, decoded, frames, data, ingest)
    meta = {"format": SOURCE_FORMAT, **record, **_shapes(frames, data)}
    write_json_atomic(partial / META_FILE, meta)
    return record


def _check_lengths(
    path: Path, csv: Path, video_s: float, csv_s: float, ingest: IngestConfig
) -> None:
    limit = ingest.max_length_mismatch_seconds
    if abs(video_s - csv_s) > limit:
        raise InputError(
            f"{path}: video lasts {video_s:.2f} s but {csv.name} ends at t={csv_s:.2f} s "
            f"(differ by {abs(video_s - csv_s):.2f} s > "
            f"ingest.max_length_mismatch_seconds={limit:g})"
        )


def _record(
    task: SourceTask,
    info: VideoInfo,
    decoded: int,
    frames: int,
    data: DataConfig,
    ingest: IngestConfig,
) -> dict[str, Any]:
    sid = source_id(task.sha256)
    return {
        "id": sid,
        "name": task.path.name,
        "path": str(task.path),
        "sha256": task.sha256,
        "bytes": task.bytes,
        "src_fps": info.fps,
        "src_width": info.width,
        "src_height": info.height,
        "src_frames": decoded,
        "container_frames": info.container_frames,
        "frames": frames,
        "has_sensors": task.csv is not None,
        "csv": task.csv.name if task.csv is not None else None,
        "roi": list(ingest.roi) if ingest.roi is not None else None,
        "labels": task.labels,
        "dir": f"{SOURCES_DIR}/{sid}",
    }


def _shapes(frames: int, data: DataConfig) -> dict[str, Any]:
    size = data.image_size
    return {
        "image_size": size,
        "fps": float(data.fps),
        "channels": list(data.channels),
        "files": {
            FRAMES_FILE: {"dtype": "uint8", "shape": [frames, size, size, 3]},
            SENSORS_FILE: {"dtype": SENSOR_DTYPE, "shape": [frames, len(data.channels)]},
        },
    }


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
