"""Find the videos among the inputs, their sensor CSVs and label files, and fingerprint them."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from foresight.errors import InputError
from foresight.ingest.layout import LABELS_DIR
from foresight.ingest.video import VIDEO_EXTENSIONS, probe_output_frames

log = logging.getLogger(__name__)

LABELS_NAME = "labels.json"
#: Explicitly named files with these suffixes are companions, not videos, and are passed over.
COMPANION_SUFFIXES = (".csv", ".json")
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class FoundVideo:
    """One video to ingest with its optional companions."""

    path: Path
    csv: Path | None
    labels: Path | None


@dataclass(frozen=True)
class Survey:
    """Content fingerprint and size estimate of one video."""

    sha256: str
    bytes: int
    estimate: int  # output frames expected from the container (0 if unknown)


def find_videos(inputs: list[Path]) -> list[FoundVideo]:
    """Videos named by or found under ``inputs`` (recursively), in order, without repeats."""
    found: dict[Path, FoundVideo] = {}
    for given in inputs:
        if not given.exists():
            raise InputError(f"{given}: no such file or directory")
        root = given.resolve()
        if root.is_file():
            if root.suffix.lower() in COMPANION_SUFFIXES:
                log.info("%s: not a video, passed over", given)
                continue
            paths = [root]
            top = root.parent
        else:
            paths = _walk(root)
            top = root
            if not paths:
                log.warning("%s: no videos found (%s)", given, " ".join(VIDEO_EXTENSIONS))
        for path in paths:
            if path not in found:
                csv = path.with_suffix(".csv")
                found[path] = FoundVideo(path, csv if csv.is_file() else None, _labels(path, top))
    return list(found.values())


def _walk(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                out.append(Path(dirpath) / name)
    return out


def _labels(video: Path, top: Path) -> Path | None:
    """The nearest ``labels.json`` in the video's directory or its parents up to ``top``."""
    for folder in [video.parent, *video.parent.parents]:
        candidate = folder / LABELS_NAME
        if candidate.is_file():
            return candidate
        if folder == top or top not in folder.parents:
            return None
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def survey(path: Path, fps: float) -> Survey:
    """Fingerprint ``path`` and estimate its output frames; never raises ``InputError``."""
    try:
        sha, size = file_sha256(path), path.stat().st_size
    except OSError as e:
        log.debug("%s: cannot read (%s)", path, e)
        return Survey("", 0, 0)
    return Survey(sha, size, probe_output_frames(path, fps))


def copy_labels(labels: Path, out: Path) -> str:
    """Copy a label file into ``out/labels/<hash>.json`` (once); returns that relative path."""
    rel = f"{LABELS_DIR}/{file_sha256(labels)[:16]}.json"
    target = out / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".labels-", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(labels, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return rel
