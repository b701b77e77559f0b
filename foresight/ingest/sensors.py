"""Stream a sensor CSV row by row and interpolate its channels onto the output frame times.

The CSV's first column is ``t`` (seconds since the start of the video, strictly increasing);
every configured channel must be present, extra columns are ignored. Each channel is linearly
interpolated to the output times ``k / fps`` for ``k`` in ``[0, frames)``; output times before
the first row or after the last row hold that row's values (the video/CSV length check bounds
how far that can reach). Memory: one row, the previous row and a small output buffer.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from foresight.errors import InputError
from foresight.ingest.layout import SENSOR_DTYPE

log = logging.getLogger(__name__)

BUFFER_ROWS = 4096


@dataclass(frozen=True)
class CsvSummary:
    """What a parsed sensor CSV held."""

    rows: int
    t_first: float
    t_last: float


def check_header(path: Path, channels: Sequence[str]) -> list[int]:
    """Column index of each channel in the CSV header; ``InputError`` naming what is wrong."""
    try:
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read the CSV header ({e})") from None
    return _columns(path, header, channels)


def _columns(path: Path, header: list[str] | None, channels: Sequence[str]) -> list[int]:
    names = [h.strip() for h in header or []]
    if not any(names):
        raise InputError(f"{path}: empty CSV (no header row)")
    if names[0] != "t":
        raise InputError(f"{path}: first column must be 't' (seconds), found {names[0]!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{path}: columns appear more than once: {', '.join(repeated)}")
    missing = [c for c in channels if c not in names]
    if missing:
        raise InputError(f"{path}: missing sensor columns: {', '.join(missing)}")
    extra = [n for n in names[1:] if n not in channels]
    if extra:
        log.info("%s: ignoring extra columns: %s", path, ", ".join(extra))
    return [names.index(c) for c in channels]


def _number(path: Path, text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"{path}: {where}, column {column!r}: non-numeric value {text.strip()!r}"
        ) from None
    if not math.isfinite(value):
        raise InputError(f"{path}: {where}, column {column!r}: NaN or infinite value {text!r}")
    return value


class _Resampler:
    """Linear interpolation of a row stream onto ``k / fps``, k < frames, written to a file."""

    def __init__(self, fh: BinaryIO, fps: float, frames: int, width: int) -> None:
        self.fh, self.fps, self.frames = fh, fps, frames
        self.buf = np.empty((min(BUFFER_ROWS, max(frames, 1)), width), SENSOR_DTYPE)
        self.filled = self.k = 0
        self.prev_t: float | None = None
        self.prev_v: np.ndarray | None = None

    def _emit(self, values: np.ndarray) -> None:
        self.buf[self.filled] = values
        self.filled += 1
        self.k += 1
        if self.filled == len(self.buf):
            self.flush()

    def flush(self) -> None:
        """Write buffered output rows."""
        if self.filled:
            self.fh.write(memoryview(self.buf[: self.filled]).cast("B"))
            self.filled = 0

    def add(self, t: float, v: np.ndarray) -> None:
        """Take the next row and write every output row that now lies before ``t``."""
        t0, v0 = self.prev_t, self.prev_v
        while self.k < self.frames and self.k / self.fps < t:
            if t0 is None or v0 is None:
                self._emit(v)
            else:
                self._emit(v0 + (v - v0) * ((self.k / self.fps - t0) / (t - t0)))
        self.prev_t, self.prev_v = t, v

    def finish(self) -> None:
        """Hold the last row's values up to the last output frame."""
        assert self.prev_v is not None
        while self.k < self.frames:
            self._emit(self.prev_v)
        self.flush()


def resample_csv(
    path: Path, channels: Sequence[str], fps: float, frames: int, fh: BinaryIO
) -> CsvSummary:
    """Parse ``path`` streaming, validate every row and write (frames, S) float32 to ``fh``."""
    try:
        with path.open(newline="") as f:
            return _resample(path, csv.reader(f), channels, fps, frames, fh)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read the CSV ({e})") from None


def _resample(
    path: Path, reader, channels: Sequence[str], fps: float, frames: int, fh: BinaryIO
) -> CsvSummary:
    index = _columns(path, next(reader, None), channels)
    width = max(index, default=0) + 1
    out = _Resampler(fh, fps, frames, len(channels))
    rows = 0
    t_first = t_last = math.nan
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        rows += 1
        where = f"row {rows} (line {reader.line_num})"
        if len(row) < width:
            raise InputError(f"{path}: {where}: {len(row)} fields, expected at least {width}")
        t = _number(path, row[0], where, "t")
        if rows > 1 and not t > t_last:
            raise InputError(
                f"{path}: {where}: timestamps not increasing (t={t:g} after t={t_last:g})"
            )
        values = np.array(
            [_number(path, row[j], where, c) for j, c in zip(index, channels, strict=True)]
        )
        out.add(t, values)
        t_first = t if rows == 1 else t_first
        t_last = t
    if rows == 0:
        raise InputError(f"{path}: empty CSV (header but no data rows)")
    out.finish()
    return CsvSummary(rows=rows, t_first=t_first, t_last=t_last)


def write_nan(fh: BinaryIO, frames: int, width: int) -> None:
    """Write ``frames`` rows of NaN sensors (a video without a CSV), in bounded chunks."""
    block = np.full((min(BUFFER_ROWS, max(frames, 1)), width), np.nan, SENSOR_DTYPE)
    left = frames
    while left > 0:
        n = min(left, len(block))
        fh.write(memoryview(block[:n]).cast("B"))
        left -= n
