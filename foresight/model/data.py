"""Where training windows come from: ingested shards, raw footage, or the simulator streamed live.

``open_training_data`` accepts an ingest directory (or its ``manifest.json``), a directory of raw
recordings (ingested first into ``<out>.shards/``, resumable), or ``sim=True`` for the simulated
line rendered on the fly (normal operation only: no faults), optionally over many line
appearances for the base model (``foresight pretrain``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from foresight.config import Config
from foresight.errors import InputError

log = logging.getLogger(__name__)


class SimStream:
    """Training windows rendered live from simulated lines (normal operation, no faults)."""

    def __init__(self, cfg: Config, seed: int, lines: int = 1, val_windows: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.lines = lines
        self.channels = tuple(cfg.data.channels)
        self.window = cfg.data.window
        self._val = val_windows

    def _line(self, k: int):
        from foresight.sim.camera import CodecStream
        from foresight.sim.line import LineSim

        sim = self.cfg.sim.model_copy(update={"faults_per_hour": 0.0})
        fields = type(sim).model_fields
        if self.lines > 1 and "appearance_seed" in fields:
            sim = sim.model_copy(update={"appearance_seed": k % self.lines})
        return CodecStream(LineSim(sim, seed=self.seed * 1_000_003 + k), sim.fps)

    def _windows_from(self, line, n: int, window: int, skip_s: float) -> Iterator:
        """Consecutive windows at the model's rate: the camera frame nearest each model instant."""
        d = self.cfg.data
        half = 0.5 / self.cfg.sim.fps
        f = line.step()
        while f.t < skip_s:
            f = line.step()
        next_t = f.t
        for _ in range(n):
            frames = np.empty((window, d.image_size, d.image_size, 3), np.uint8)
            sens = np.empty((window, len(self.channels)), np.float32)
            for i in range(window):
                while f.t < next_t - half:
                    f = line.step()
                frames[i] = cv2.resize(
                    f.frame, (d.image_size, d.image_size), interpolation=cv2.INTER_AREA
                )
                sens[i] = f.sensors[: len(self.channels)]
                next_t += 1.0 / d.fps
            yield frames, sens

    def batches(self, batch_size: int, rng: np.random.Generator, window: int | None = None):
        """Endless batches: one persistent line per slot, streaming consecutive windows.

        Each line is fast-forwarded once past its start-up, and replaced by a fresh line (another
        seed and, when pretraining, another appearance) after ``refresh`` windows, so rendering
        costs about one window of frames per window served.
        """
        window = window or self.window
        refresh = 30
        slots: list[Iterator | None] = [None] * batch_size
        served = [0] * batch_size
        k = 0
        while True:
            fr, se = [], []
            for i in range(batch_size):
                if slots[i] is None or served[i] >= refresh:
                    line = self._line(int(rng.integers(1 << 30)) + k)
                    k += 1
                    skip = float(rng.uniform(25.0, 60.0))
                    slots[i], served[i] = self._windows_from(line, 10**9, window, skip), 0
                f, s = next(slots[i])
                served[i] += 1
                fr.append(f)
                se.append(s)
            yield np.stack(fr), np.stack(se)

    def streams(
        self, count: int = 4, seconds: float = 120.0
    ) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
        """``count`` continuous normal recordings of ``seconds`` each (calibration footage)."""
        n = max(2, round(seconds * self.cfg.data.fps))
        for k in range(count):
            line = self._line(10_000 + k)
            frames, sensors = next(self._windows_from(line, 1, n, 0.0))
            yield {"name": f"sim-{self.seed}-{k}"}, frames, sensors

    def iter_windows(
        self, batch_size: int, limit: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A fixed set of held-out windows (same every call; at most ``limit``)."""
        rng = np.random.default_rng(self.seed + 1)
        it = self.batches(batch_size, rng)
        total = self._val if limit is None else min(self._val, limit)
        for _ in range(max(1, total // batch_size)):
            yield next(it)


def manifest_hashes(path: Path) -> dict[str, Any]:
    """Hashes identifying the footage a model learned from (for its model card)."""
    man = path / "manifest.json" if path.is_dir() else path
    data = json.loads(man.read_text())
    sources = data.get("sources", [])
    digest = hashlib.sha256(
        "".join(sorted(s.get("sha256", "") for s in sources)).encode()
    ).hexdigest()
    return {
        "manifest": str(man.resolve()),
        "sources": len(sources),
        "frames": sum(int(s.get("frames", 0)) for s in sources),
        "sha256_of_sources": digest,
        "files": [{"path": s.get("path"), "sha256": s.get("sha256")} for s in sources],
    }


def open_training_data(
    cfg: Config,
    data: Path | None,
    out: Path,
    *,
    sim: bool = False,
    lines: int = 1,
    progress: bool = True,
):
    """Training and validation sources plus the data description for the model card."""
    if sim:
        seed = cfg.train.seed
        train = SimStream(cfg, seed=seed * 2 + 11, lines=lines)
        val = SimStream(
            cfg,
            seed=seed * 2 + 12,
            lines=lines,
            val_windows=cfg.train.val_batches * cfg.train.batch_size,
        )
        return train, val, {"source": "simulator", "lines": lines, "sim": cfg.sim.model_dump()}
    if data is None:
        raise InputError("no training data: give --data DIR or --sim")
    data = Path(data)
    if not data.exists():
        raise InputError(f"{data}: no such file or directory")
    from foresight.ingest import ShardDataset, run_ingest

    is_manifest = data.name == "manifest.json" or (data / "manifest.json").is_file()
    if not is_manifest:
        shards = out.with_name(out.name + ".shards")
        log.info("ingesting raw footage %s into %s", data, shards)
        report = run_ingest([data], shards, cfg.data, cfg.ingest, progress=progress)
        for path, msg in report.failed:
            log.warning("skipped %s: %s", path, msg)
        data = shards
    ds = ShardDataset(data)
    stored = ds.data
    if int(stored["image_size"]) != cfg.data.image_size or list(stored["channels"]) != list(
        cfg.data.channels
    ):
        raise InputError(
            f"{data}: shards were ingested at image_size={stored['image_size']} with channels "
            f"{list(stored['channels'])}; the config asks for {cfg.data.image_size} and "
            f"{list(cfg.data.channels)}; re-ingest or change the config"
        )
    if len(ds) == 0:
        raise InputError(f"{data}: no complete training window (need {ds.window} frames)")
    train, val = ds.split(cfg.train.val_fraction, seed=cfg.train.seed)
    if len(train) == 0 or len(val) == 0:
        raise InputError(f"{data}: too little footage to hold out validation windows")
    return train, val, {"source": "shards", **manifest_hashes(Path(data))}
