"""``foresight bench sim``: simulator speed on one core, rendering alone and end to end."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from foresight.bench.report import section, write_section
from foresight.config import Config
from foresight.sim.config import SimConfig
from foresight.sim.generate import simulate_to_dir
from foresight.sim.line import LineSim

WARMUP_FRAMES = 50


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """Pin this process to its first allowed CPU and OpenCV to one thread; restore after."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        if saved:
            cpu = min(saved)
            os.sched_setaffinity(0, {cpu})
            yield f"CPU {cpu}, OpenCV 1 thread"
        else:
            yield "OpenCV 1 thread (no CPU affinity on this platform)"
    finally:
        if saved:
            os.sched_setaffinity(0, saved)
        cv2.setNumThreads(threads)


def render_rate(cfg: SimConfig, seconds: float) -> tuple[int, float]:
    """(frames, frames/s) of ``LineSim.step()`` over ``seconds`` of simulated time, steady state."""
    sim = LineSim(cfg)
    for _ in range(max(WARMUP_FRAMES, round((cfg.rampup_seconds + 6.0) * cfg.fps))):
        sim.step()  # past the start-up ramp, belt full of cartons
    n = max(1, round(seconds * cfg.fps))
    t0 = time.perf_counter()
    for _ in range(n):
        sim.step()
    return n, n / (time.perf_counter() - t0)


def end_to_end_rate(cfg: SimConfig, seconds: float) -> tuple[int, float, float]:
    """(frames, frames/s, MB written) of ``simulate_to_dir`` including mp4 encoding and CSVs."""
    with tempfile.TemporaryDirectory(prefix="foresight-bench-sim-") as tmp:
        t0 = time.perf_counter()
        summary = simulate_to_dir(cfg, Path(tmp), hours=seconds / 3600.0, progress=False)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return summary.frames, summary.frames / wall, size / 1e6


def bench_sim(cfg: Config, seconds: float, out: Path) -> str:
    """Measure simulator frames/s on one core, write the "sim" section of ``out``, return it."""
    sim = cfg.sim
    sizes = [(sim.width, sim.height)]
    if (sim.width, sim.height) != (128, 128):
        sizes.append((128, 128))
    rows = []
    with one_core() as where:
        for w, h in sizes:
            c = sim.model_copy(update={"width": w, "height": h})
            n, fps = render_rate(c, seconds)
            rows.append(
                f"| `LineSim.step()` | {w}x{h} | {n} | {fps:,.0f} | {fps / sim.fps:,.1f}x |"
            )
        n, fps, mb = end_to_end_rate(sim, seconds)
        rows.append(
            f"| `simulate_to_dir` (mp4v + CSV + labels) | {sim.width}x{sim.height} | {n} | "
            f"{fps:,.0f} | {fps / sim.fps:,.1f}x |"
        )
    body = (
        f"Preset `{cfg.preset}`, {seconds:g} simulated seconds per row at {sim.fps:g} fps, "
        f"seed {sim.seed}, appearance {sim.appearance_seed}; measured on one core ({where}).\n"
        f"Faults {sim.faults_per_hour:g}/h and nuisances {sim.nuisance_per_hour:g}/h as "
        f"configured; end to end wrote {mb:.1f} MB.\n\n"
        "| what | frame size | frames | frames/s | x real time |\n"
        "|---|---|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    md = section("Simulator speed", body)
    write_section(out, "sim", md)
    return md
