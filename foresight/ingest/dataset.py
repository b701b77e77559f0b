"""Read-only access to ingested shards: fixed-shape windows, splits by source, random batches.

Frames and sensors are memory-mapped lazily (``np.memmap`` mode ``"r"``) per source on first use,
so opening a dataset reads only the manifest and checks file sizes. Window ``i`` of a source
covers frames ``[i*stride, i*stride + window)``; global window indices run through the sources in
manifest order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from foresight.errors import InputError
from foresight.ingest.layout import (
    FRAMES_FILE,
    MANIFEST,
    SENSOR_DTYPE,
    SENSORS_FILE,
    expected_bytes,
    read_manifest,
    window_count,
)

log = logging.getLogger(__name__)

STATS_CHUNK_ROWS = 1 << 16

Segment = tuple[int, int, int]  # (position in self.sources, first frame, end frame)


class ShardDataset:
    """Training windows of a shard directory written by ``foresight ingest``."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        manifest_path = path / MANIFEST if path.is_dir() else path
        manifest = read_manifest(manifest_path)
        self.root = manifest_path.parent
        self.data: dict[str, Any] = dict(manifest["data"])
        self._window = int(self.data["window"])
        self.stride = int(self.data["stride"])
        self.channels: tuple[str, ...] = tuple(self.data["channels"])
        self.image_size = int(self.data["image_size"])
        self.sources: list[dict[str, Any]] = list(manifest["sources"])
        for src in self.sources:
            self._check_files(src)
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._set_segments([(p, 0, int(s["frames"])) for p, s in enumerate(self.sources)])

    def _check_files(self, src: dict[str, Any]) -> None:
        frames = int(src["frames"])
        for name, nbytes in expected_bytes(frames, self.data).items():
            file = self.root / src["dir"] / name
            if not file.is_file():
                raise InputError(f"{file}: missing (shard directory incomplete; rerun ingest)")
            if file.stat().st_size != nbytes:
                raise InputError(
                    f"{file}: {file.stat().st_size} bytes, expected {nbytes} "
                    f"for {frames} frames (shard corrupt; delete its directory and rerun ingest)"
                )

    def _set_segments(self, segments: list[Segment]) -> None:
        self._segments = segments
        counts = [window_count(hi - lo, self._window, self.stride) for _, lo, hi in segments]
        self._ends = np.cumsum(counts, dtype=np.int64)

    def _view(self, segments: list[Segment]) -> ShardDataset:
        """A dataset over some segments of this one, sharing its memory maps."""
        view = object.__new__(ShardDataset)
        view.__dict__.update(self.__dict__)
        used = sorted({p for p, _, _ in segments})
        view.sources = [self.sources[p] for p in used]
        view._set_segments([(used.index(p), lo, hi) for p, lo, hi in segments])
        return view

    def __len__(self) -> int:
        """Total number of windows."""
        return int(self._ends[-1]) if len(self._ends) else 0

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.root)!r}, sources={len(self.sources)}, windows={len(self)})"

    def _arrays(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        src = self.sources[pos]
        maps = self._maps.get(src["id"])
        if maps is None:
            n, size, width = int(src["frames"]), self.image_size, len(self.channels)
            folder = self.root / src["dir"]
            frames = np.memmap(folder / FRAMES_FILE, np.uint8, "r", shape=(n, size, size, 3))
            if width:
                sensors = np.memmap(folder / SENSORS_FILE, SENSOR_DTYPE, "r", shape=(n, width))
            else:
                sensors = np.zeros((n, 0), np.float32)
            maps = self._maps[src["id"]] = (frames, sensors)
        return maps

    def _locate(self, i: int) -> tuple[int, int]:
        """(source position, first frame) of global window ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range (dataset has {len(self)})")
        seg = int(np.searchsorted(self._ends, i, side="right"))
        first = int(self._ends[seg - 1]) if seg else 0
        pos, lo, _ = self._segments[seg]
        return pos, lo + (i - first) * self.stride

    @property
    def window(self) -> int:
        """Frames per stored window; ``read_window(i)`` reads window ``i``."""
        return self._window

    def read_window(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``i``: frames uint8 (window, H, W, 3) and sensors float32 (window, S)."""
        pos, start = self._locate(i)
        frames, sensors = self._arrays(pos)
        end = start + self._window
        return np.array(frames[start:end]), np.array(sensors[start:end], np.float32)

    def _gather(
        self, indices: np.ndarray, offsets: np.ndarray, length: int
    ) -> tuple[np.ndarray, np.ndarray]:
        size, width = self.image_size, len(self.channels)
        frames = np.empty((len(indices), length, size, size, 3), np.uint8)
        sensors = np.empty((len(indices), length, width), np.float32)
        for b, (i, off) in enumerate(zip(indices, offsets, strict=True)):
            pos, start = self._locate(int(i))
            fm, sm = self._arrays(pos)
            start += int(off)
            frames[b] = fm[start : start + length]
            sensors[b] = sm[start : start + length]
        return frames, sensors

    def batches(
        self, batch_size: int, rng: np.random.Generator, window: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless random batches: frames (B, T, H, W, 3) uint8, sensors (B, T, S) float32.

        ``window`` (T) may be shorter than the stored window; each sample then starts at a random
        offset inside its stored window.
        """
        length = self._window if window is None else int(window)
        if not 1 <= length <= self._window:
            raise ValueError(f"window must be in 1..{self._window}, got {window}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(self) == 0:
            raise InputError(f"{self.root}: no training windows (footage shorter than a window)")
        while True:
            indices = rng.integers(0, len(self), batch_size)
            offsets = rng.integers(0, self._window - length + 1, batch_size)
            yield self._gather(indices, offsets, length)

    def iter_windows(
        self, batch_size: int, limit: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One ordered pass over the windows in batches (the last one may be smaller).

        With ``limit``, at most that many windows, spaced evenly over all of the footage (the
        same ones every call): a validation subset that sees every held-out recording, not the
        first few minutes of it.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if limit is not None and limit < len(self):
            order = np.unique(np.linspace(0, len(self) - 1, max(limit, 1)).round().astype(int))
        else:
            order = np.arange(len(self))
        for lo in range(0, len(order), batch_size):
            indices = order[lo : lo + batch_size]
            yield self._gather(indices, np.zeros_like(indices), self._window)

    def streams(self) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
        """Each contiguous stretch of footage: (source record, frames (T, H, W, 3), sensors (T, S)).

        The arrays are read-only memory maps; calibration and replay walk them in time order.
        """
        for pos, lo, hi in self._segments:
            frames, sensors = self._arrays(pos)
            yield self.sources[pos], frames[lo:hi], sensors[lo:hi]

    def split(self, val_fraction: float, seed: int = 0) -> tuple[ShardDataset, ShardDataset]:
        """(train, val) holding out whole sources; one source is split in time (last part = val).

        With two or more sources that have windows, each side gets at least one of them. With one,
        val takes its last ``val_fraction`` of windows and train the windows wholly before them.
        """
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        counts = np.diff(self._ends, prepend=0)
        useful = [s for s, c in enumerate(counts) if c > 0]
        idle = [s for s, c in enumerate(counts) if c == 0]
        if len(useful) >= 2:
            order = np.random.default_rng(seed).permutation(useful)
            n_val = min(max(round(val_fraction * len(useful)), 1), len(useful) - 1)
            val = sorted(int(s) for s in order[:n_val])
            train = sorted([int(s) for s in order[n_val:]] + idle)
            pick = self._segments
            return self._view([pick[s] for s in train]), self._view([pick[s] for s in val])
        if not useful or counts[useful[0]] < 2:
            raise InputError(
                f"{self.root}: too little footage to split ({len(self)} window(s)); ingest more"
            )
        seg = useful[0]
        pos, lo, hi = self._segments[seg]
        total = int(counts[seg])
        n_val = min(max(round(val_fraction * total), 1), total - 1)
        cut = lo + (total - n_val) * self.stride
        others = [self._segments[s] for s in idle]
        return self._view([*others, (pos, lo, cut)]), self._view([(pos, cut, hi)])

    def sensor_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (mean, std) float32 over every frame with finite sensor values (NaN-aware).

        Streamed in chunks and merged (Chan et al.); a channel with no values gives NaN.
        """
        width = len(self.channels)
        count, mean, m2 = np.zeros(width), np.zeros(width), np.zeros(width)
        for pos, lo, hi in self._segments:
            if not self.sources[pos].get("has_sensors", True):
                continue
            sensors = self._arrays(pos)[1]
            for a in range(lo, hi, STATS_CHUNK_ROWS):
                block = np.asarray(sensors[a : min(a + STATS_CHUNK_ROWS, hi)], np.float64)
                count, mean, m2 = _merge(count, mean, m2, block)
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(m2 / count)
        mean = np.where(count > 0, mean, np.nan)
        if np.any(count == 0):
            missing = [c for c, n in zip(self.channels, count, strict=True) if n == 0]
            log.warning("no sensor values for channels: %s", ", ".join(missing))
        return mean.astype(np.float32), std.astype(np.float32)


def _merge(
    count: np.ndarray, mean: np.ndarray, m2: np.ndarray, block: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge a block's per-column NaN-aware moments into running (count, mean, M2)."""
    finite = np.isfinite(block)
    n = finite.sum(axis=0).astype(np.float64)
    safe = np.where(finite, block, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        b_mean = np.where(n > 0, safe.sum(axis=0) / n, 0.0)
        b_m2 = np.where(finite, (safe - b_mean) ** 2, 0.0).sum(axis=0)
        total = count + n
        delta = b_mean - mean
        new_mean = np.where(total > 0, mean + delta * n / total, 0.0)
        new_m2 = m2 + b_m2 + np.where(total > 0, delta**2 * count * n / total, 0.0)
    return total, new_mean, new_m2
