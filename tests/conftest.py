"""Shared fixtures: the tiny config and writers of small synthetic recordings."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from foresight.config import Config, load_config

#: Grey levels of the four base-4 digits that encode a frame's index in flat blocks.
LEVELS = (32, 96, 160, 224)


class Clips:
    """Write tiny videos whose frames carry their index, and matching sensor CSVs."""

    levels = LEVELS

    @staticmethod
    def frame(index: int, width: int, height: int) -> np.ndarray:
        """BGR frame: top half = 4 grey blocks (base-4 digits of index), bottom = red | blue."""
        img = np.zeros((height, width, 3), np.uint8)
        half, block = height // 2, width // 4
        for d in range(4):
            digit = (index // 4 ** (3 - d)) % 4
            img[:half, d * block : (d + 1) * block] = LEVELS[digit]
        img[half:, : width // 2] = (0, 0, 255)
        img[half:, width // 2 :] = (255, 0, 0)
        return img

    @staticmethod
    def index(rgb: np.ndarray, top: float = 0.5) -> int:
        """Decode the index from an RGB frame whose top ``top`` fraction holds the digit blocks."""
        rows = int(rgb.shape[0] * top)
        band = rgb[rows // 4 : rows * 3 // 4]
        block = rgb.shape[1] // 4
        value = 0
        for d in range(4):
            cell = band[:, d * block + block // 4 : (d + 1) * block - block // 4]
            level = float(cell.mean())
            value = value * 4 + int(np.argmin([abs(level - x) for x in LEVELS]))
        return value

    @classmethod
    def video(
        cls,
        path: Path,
        frames: int,
        fps: float,
        width: int = 96,
        height: int = 72,
        fourcc: str = "mp4v",
    ) -> Path:
        """Write ``frames`` frames at ``fps``; frame i shows index i."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        assert writer.isOpened(), f"cannot write {path}"
        for i in range(frames):
            writer.write(cls.frame(i, width, height))
        writer.release()
        return path

    @staticmethod
    def value(t: np.ndarray | float, j: int) -> np.ndarray | float:
        """The smooth test signal of channel ``j`` at time ``t``."""
        return (j + 1) * np.sin(t) + 0.1 * j * np.asarray(t) ** 2

    @classmethod
    def csv(
        cls,
        path: Path,
        times: Sequence[float],
        channels: Sequence[str],
        edit: Callable[[list[list[str]]], None] | None = None,
    ) -> Path:
        """Write a sensor CSV (``t`` + channels); ``edit`` may alter the text rows first."""
        rows = [["t", *channels]]
        for t in times:
            rows.append(
                [repr(float(t))] + [repr(float(cls.value(t, j))) for j in range(len(channels))]
            )
        if edit is not None:
            edit(rows)
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        return path


@pytest.fixture
def clips() -> type[Clips]:
    """Writers and readers of synthetic recordings."""
    return Clips


@pytest.fixture
def tiny_cfg() -> Config:
    """The ``tiny`` preset, independent of the caller's environment, on the whole frame: the
    synthetic clips encode frame indices across the picture (the automatic ROI has its own
    tests in test_ingest_roi.py)."""
    cfg = load_config(preset="tiny", environ={})
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"roi": None})})


SAMPLES = Path(__file__).parent.parent / "data_samples"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny model trained briefly on the shipped normal samples and calibrated by train."""
    from foresight.model.fit import fit

    cfg = load_config(preset="tiny", environ={}, overrides=["train.max_steps=60"])
    root = tmp_path_factory.mktemp("tiny")
    # The first three clips only: what the monitor and retrain tests were written against (a
    # 60-step model is only a fixture; with all six clips its 30 s calibration clip is another).
    data = root / "normal"
    data.mkdir()
    for f in sorted((SAMPLES / "normal").glob("clip_000[0-2].*")):
        shutil.copy(f, data / f.name)
    shutil.copy(SAMPLES / "normal" / "sim_config.json", data / "sim_config.json")
    labels = json.loads((SAMPLES / "normal" / "labels.json").read_text())
    for key, items in labels.items():
        if isinstance(items, list):
            labels[key] = [x for x in items if x.get("file", "clip_0000.mp4") <= "clip_0002.mp4"]
    (data / "labels.json").write_text(json.dumps(labels))
    out = root / "model"
    fit(cfg, data, out, progress=False)
    return out
