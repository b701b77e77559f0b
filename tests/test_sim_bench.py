"""``foresight bench sim`` measures on one core and writes its BENCHMARKS.md section."""

from __future__ import annotations

import os

import cv2

from foresight.bench.sim import bench_sim, one_core, render_rate
from foresight.config import load_config


def test_bench_sim_writes_a_section_and_restores_the_process(tmp_path):
    cfg = load_config(preset="tiny")
    out = tmp_path / "BENCHMARKS.md"
    affinity, threads = os.sched_getaffinity(0), cv2.getNumThreads()
    md = bench_sim(cfg, seconds=2.0, out=out)
    assert os.sched_getaffinity(0) == affinity and cv2.getNumThreads() == threads
    text = out.read_text()
    assert "<!-- bench:sim -->" in text and "## Simulator speed" in text and md.strip() in text
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split("|")[2].strip() for r in rows] == ["64x64", "128x128", "64x64"]
    for r in rows:
        assert float(r.split("|")[4].replace(",", "")) > 0


def test_render_rate_counts_every_frame_on_one_core():
    sim = load_config(preset="default").sim.model_copy(update={"rampup_seconds": 1.0})
    with one_core():
        frames, fps = render_rate(sim, seconds=20.0)
    assert frames == 500  # speed itself is a benchmark figure (`foresight bench sim`), not a test
    assert fps > 0
