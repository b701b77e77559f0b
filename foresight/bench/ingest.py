"""Ingest throughput: make footage, ingest it with 1 and 2 workers, report rates and peak memory.

Footage comes from the simulator (``foresight.sim.generate.simulate_to_dir``) when it is
available, else from a small synthetic writer here (moving boxes on a gradient with camera noise,
``mp4v``, same size, rate and clip length as ``[sim]``). Each ingest runs in a fresh interpreter
so its peak RSS (``ru_maxrss``; the main process and the largest worker) is its own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from foresight.bench.report import section, write_section
from foresight.config import Config
from foresight.schema import SENSOR_CHANNELS
from foresight.sim.config import SimConfig

log = logging.getLogger(__name__)

WORKER_COUNTS = (1, 2)

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from foresight.ingest import run_ingest
from foresight.ingest.config import DataConfig, IngestConfig

if __name__ == "__main__":
    inputs, out, data, ingest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    data = DataConfig.model_validate_json(data)
    ingest = IngestConfig.model_validate_json(ingest)
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * resource.getpagesize() // 1024
    start = time.perf_counter()
    report = run_ingest([Path(inputs)], Path(out), data, ingest, progress=False)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    again = run_ingest([Path(inputs)], Path(out), data, ingest, progress=False)
    resume = time.perf_counter() - start
    assert not again.ok, "second run should skip everything"
    print(json.dumps({
        "resume_seconds": resume,
        "seconds": seconds, "ok": len(report.ok), "failed": [m for _, m in report.failed],
        "frames": report.frames, "base_kb": base,
        "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "child_peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }))
"""


def synthetic_footage(sim: SimConfig, minutes: float, folder: Path) -> None:
    """Write ``minutes`` of moving-box footage and sensor CSVs in clips of ``sim.clip_seconds``."""
    rng = np.random.default_rng(sim.seed)
    total = round(minutes * 60 * sim.fps)
    per_clip = max(1, round(sim.clip_seconds * sim.fps))
    w, h = sim.width, sim.height
    ramp = np.linspace(60, 160, w, dtype=np.float32)[None, :, None]
    background = np.broadcast_to(ramp, (h, w, 3)).astype(np.float32)
    for clip, start in enumerate(range(0, total, per_clip)):
        n = min(per_clip, total - start)
        path = folder / f"clip_{clip:04d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), sim.fps, (w, h))
        for i in range(n):
            frame = background + rng.normal(0, sim.noise_sigma, (h, w, 3)).astype(np.float32)
            for box in range(3):
                x = int(((start + i) * 2 + box * w / 3) % (w + 20)) - 20
                frame[h // 3 : h // 3 + h // 4, max(x, 0) : max(x + 20, 0)] = (40, 90, 200)
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
        writer.release()
        t = np.arange(n) / sim.fps
        cols = [t] + [np.sin(t * (j + 1)) + j for j in range(len(SENSOR_CHANNELS))]
        header = ",".join(("t", *SENSOR_CHANNELS))
        np.savetxt(
            path.with_suffix(".csv"), np.stack(cols, 1), "%.6f", ",", header=header, comments=""
        )


def make_footage(cfg: Config, minutes: float, folder: Path) -> str:
    """Fill ``folder`` with footage; returns where it came from."""
    try:
        from foresight.sim.generate import simulate_to_dir

        simulate_to_dir(cfg.sim, folder, hours=minutes / 60, progress=False)
        return "simulator (foresight.sim.generate)"
    except Exception as e:  # the simulator is optional here
        log.info("simulator unavailable (%s: %s); writing synthetic footage", type(e).__name__, e)
        for p in folder.iterdir():
            if p.is_file():
                p.unlink()
        synthetic_footage(cfg.sim, minutes, folder)
        return "synthetic writer (foresight.bench.ingest; simulator not available)"


def _footage_stats(folder: Path) -> dict[str, Any]:
    frames, size, fps, dims = 0, 0, set(), set()
    videos = sorted(p for p in folder.rglob("*") if p.suffix in (".mp4", ".avi", ".mkv"))
    for path in videos:
        cap = cv2.VideoCapture(str(path))
        frames += int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps.add(round(cap.get(cv2.CAP_PROP_FPS), 3))
        dims.add(
            f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        )
        cap.release()
        size += path.stat().st_size
    return {"videos": len(videos), "frames": frames, "bytes": size, "fps": fps, "dims": dims}


def _run_child(cfg: Config, inputs: Path, out: Path, workers: int) -> dict[str, Any]:
    ingest = cfg.ingest.model_copy(update={"workers": workers})
    argv = [sys.executable, "-c", _CHILD, str(inputs), str(out)]
    argv += [cfg.data.model_dump_json(), ingest.model_dump_json()]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ingest benchmark child failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_ingest(cfg: Config, minutes: float, out: Path) -> str:
    """Time ingest of ``minutes`` of footage with 1 and 2 workers; write and return the section."""
    with tempfile.TemporaryDirectory(prefix="foresight-bench-ingest-") as tmp:
        footage = Path(tmp) / "footage"
        footage.mkdir()
        t0 = time.perf_counter()
        origin = make_footage(cfg, minutes, footage)
        made = time.perf_counter() - t0
        stats = _footage_stats(footage)
        runs = {w: _run_child(cfg, footage, Path(tmp) / f"shards_{w}", w) for w in WORKER_COUNTS}
    body = _markdown(cfg, minutes, origin, made, stats, runs)
    markdown = section("Ingest throughput", body)
    write_section(out, "ingest", markdown)
    return markdown


def _markdown(
    cfg: Config,
    minutes: float,
    origin: str,
    made: float,
    stats: dict[str, Any],
    runs: dict[int, dict[str, Any]],
) -> str:
    mb = stats["bytes"] / 1e6
    lines = [
        f"Footage: {minutes:g} min from the {origin} in {made:.1f} s: {stats['videos']} videos, "
        f"{', '.join(sorted(stats['dims']))} at {', '.join(map(str, sorted(stats['fps'])))} fps, "
        f"{stats['frames']} source frames, {mb:.1f} MB. Output: {cfg.data.image_size} px square "
        f"at {cfg.data.fps:g} fps, chunks of {cfg.ingest.chunk_frames} frames. "
        f"{os.cpu_count()} CPU cores.",
        "",
        "| workers | wall s | of which fixed s | source frames/s | output frames/s | video MB/s "
        "| RSS after imports MB | peak RSS main MB | peak RSS worker MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, r in runs.items():
        s = r["seconds"]
        child = f"{r['child_peak_kb'] / 1024:.0f}" if r["child_peak_kb"] else "(no pool)"
        lines.append(
            f"| {workers} | {s:.2f} | {r['resume_seconds']:.2f} | {stats['frames'] / s:.0f} "
            f"| {r['frames'] / s:.0f} "
            f"| {mb / s:.2f} | {r['base_kb'] / 1024:.0f} | {r['peak_kb'] / 1024:.0f} | {child} |"
        )
        if r["failed"]:
            lines.append(f"\n{len(r['failed'])} source(s) failed, e.g. {r['failed'][0]}")
    lines += [
        "",
        "Wall time covers the whole `run_ingest` call; *of which fixed* is a second, fully "
        "resumed run over the same inputs (fingerprinting with SHA-256, probing and, with 2 "
        "workers, starting the spawn-context pool), the cost paid before any decoding. Rates "
        "are over the whole wall time. Peak RSS is `ru_maxrss` of a fresh process per worker "
        "count (main process; largest pool worker).",
    ]
    return "\n".join(lines)
