"""On-disk layout of a shard directory: the manifest, per-source directories and atomic writes.

Layout of ``out/``::

    manifest.json             {"format": "foresight-shards/1", "data": {...},
                               "sources": [{...}, ...], "failures": [{"path", "error"}, ...]}
    sources/<id>/frames.u8    raw uint8, C order, shape (frames, image_size, image_size, 3), RGB
    sources/<id>/sensors.f32  raw little-endian float32, shape (frames, len(channels));
                              all NaN when the video had no CSV
    sources/<id>/meta.json    the source's record (the manifest entry without ``windows``)
    labels/<hash>.json        copies of the simulator's ``labels.json`` files, by content hash

``<id>`` is the first 16 hex digits of the SHA-256 of the video file's bytes. A source is written
into ``sources/<id>.partial/`` and renamed when complete; the manifest (temp file + ``os.replace``)
is rewritten after each completed or failed source, so it only ever lists complete sources.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foresight.errors import InputError
from foresight.ingest.config import DataConfig

log = logging.getLogger(__name__)

FORMAT = "foresight-shards/1"
MANIFEST = "manifest.json"
SOURCES_DIR = "sources"
LABELS_DIR = "labels"
FRAMES_FILE = "frames.u8"
SENSORS_FILE = "sensors.f32"
META_FILE = "meta.json"
PARTIAL_SUFFIX = ".partial"
SENSOR_DTYPE = "<f4"
LOCK_FILE = ".ingest.lock"
#: Settings that change the bytes of a shard; a manifest with other values is never mixed into.
COMPAT_KEYS = ("image_size", "fps", "channels")
#: Keys every source record must have for the shards to be readable.
SOURCE_KEYS = ("id", "path", "sha256", "frames", "has_sensors", "windows", "dir")


def data_settings(data: DataConfig) -> dict[str, Any]:
    """The ``data`` block of a manifest for these settings."""
    return {
        "image_size": data.image_size,
        "fps": float(data.fps),
        "channels": list(data.channels),
        "window": data.window,
        "stride": data.stride,
    }


def window_count(frames: int, window: int, stride: int) -> int:
    """Number of fixed-shape windows ``[i*stride, i*stride + window)`` inside ``frames`` frames.

    >>> window_count(10, 4, 2), window_count(3, 4, 2), window_count(4, 4, 2)
    (4, 0, 1)
    """
    return 0 if frames < window else (frames - window) // stride + 1


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` via a synced temp file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_manifest(data: DataConfig) -> dict[str, Any]:
    """An empty manifest for these data settings."""
    return {"format": FORMAT, "data": data_settings(data), "sources": [], "failures": []}


def read_manifest(path: Path) -> dict[str, Any]:
    """Load and check a manifest file; ``InputError`` naming it if absent or malformed."""
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        with path.open() as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path}: not a {FORMAT} manifest (format: {got!r})")
    data = manifest.get("data")
    keys = ("image_size", "fps", "channels", "window", "stride")
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise InputError(f"{path}: manifest 'data' block must hold {', '.join(keys)}")
    for key in ("sources", "failures"):
        if not isinstance(manifest.get(key), list):
            raise InputError(f"{path}: manifest {key!r} must be a list")
    for i, src in enumerate(manifest["sources"]):
        lacking = [k for k in SOURCE_KEYS if not isinstance(src, dict) or k not in src]
        if lacking:
            raise InputError(f"{path}: source #{i} lacks {', '.join(lacking)}")
    return manifest


def open_manifest(out: Path, data: DataConfig) -> dict[str, Any]:
    """The manifest of ``out`` (new if none), refusing one written with other data settings.

    A different ``window``/``stride`` is not refused: window counts are recomputed.
    """
    path = out / MANIFEST
    if not path.exists():
        return new_manifest(data)
    manifest = read_manifest(path)
    want = data_settings(data)
    have = manifest["data"]
    differ = [k for k in COMPAT_KEYS if _norm(have[k]) != _norm(want[k])]
    if differ:
        old = ", ".join(f"{k}={have[k]!r}" for k in differ)
        new = ", ".join(f"{k}={want[k]!r}" for k in differ)
        raise InputError(
            f"{path}: shards were made with {old} but this run asks for {new}; "
            "use another --out directory or the same data settings"
        )
    if (have["window"], have["stride"]) != (want["window"], want["stride"]):
        log.info(
            "window/stride changed from %s/%s to %s/%s: recounting windows",
            have["window"],
            have["stride"],
            want["window"],
            want["stride"],
        )
        for src in manifest["sources"]:
            src["windows"] = window_count(src["frames"], data.window, data.stride)
    manifest["data"] = want
    return manifest


def _norm(value: Any) -> Any:
    return [*value] if isinstance(value, (list, tuple)) else float(value)


def expected_bytes(frames: int, data: dict[str, Any]) -> dict[str, int]:
    """Sizes of a source's data files for ``frames`` frames under these data settings."""
    size, width = int(data["image_size"]), len(data["channels"])
    return {FRAMES_FILE: frames * size * size * 3, SENSORS_FILE: frames * width * 4}


def _intact(out: Path, src: dict[str, Any], data: dict[str, Any]) -> bool:
    for name, nbytes in expected_bytes(int(src["frames"]), data).items():
        file = out / src["dir"] / name
        if not file.is_file() or file.stat().st_size != nbytes:
            return False
    return True


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold ``out/.ingest.lock`` so two ingests never write one shard directory at once."""
    with (out / LOCK_FILE).open("a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{out}: another ingest is writing to this directory") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def clean_stale(out: Path, manifest: dict[str, Any]) -> None:
    """Forget listed sources whose files are gone or damaged, and delete unlisted directories.

    Unlisted directories are ``.partial`` ones and any renamed just before an interruption.
    """
    broken = [s for s in manifest["sources"] if not _intact(out, s, manifest["data"])]
    for src in broken:
        log.warning(
            "%s: files missing or damaged in %s; dropped (ingest it again)", src["path"], src["dir"]
        )
    manifest["sources"] = [s for s in manifest["sources"] if s not in broken]
    root = out / SOURCES_DIR
    if not root.is_dir():
        return
    listed = {Path(s["dir"]).name for s in manifest["sources"]}
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name not in listed:
            log.info("removing stale %s (left by an interrupted ingest)", child)
            shutil.rmtree(child)


def sort_records(manifest: dict[str, Any]) -> None:
    """Order sources and failures by path so the manifest does not depend on completion order."""
    manifest["sources"].sort(key=lambda s: (s["path"], s["id"]))
    manifest["failures"].sort(key=lambda f: f["path"])
