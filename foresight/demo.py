"""``foresight demo``: the main job on embedded defaults, with no PLC, database or camera.

Today it simulates a few minutes of the cartoning line (with faults and their labels), ingests the
normal footage into training shards, trains a world model for a short budget and prints how well it
predicts each horizon against the copy-last-frame and linear-extrapolation baselines. As the monitor
lands it will grow into the live monitor with its dashboard.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from foresight.config import Config
from foresight.ingest import run_ingest

log = logging.getLogger(__name__)


def run_demo(cfg: Config, out: Path, minutes: float, train_minutes: float, progress: bool) -> str:
    """Simulate, ingest and train; return a short human summary."""
    from foresight.model.fit import fit
    from foresight.sim.generate import simulate_to_dir

    out = Path(out)
    normal, faults = out / "footage" / "normal", out / "footage" / "faults"
    for d in (normal, faults):
        shutil.rmtree(d, ignore_errors=True)
    print(f"1/4 simulating {minutes:.0f} min of normal footage into {normal}")
    sim = cfg.sim.model_copy(update={"faults_per_hour": 0.0})
    simulate_to_dir(sim, normal, hours=minutes / 60, progress=progress)
    print(f"2/4 simulating {minutes / 2:.0f} min with faults (labels.json) into {faults}")
    simulate_to_dir(
        cfg.sim.model_copy(update={"seed": cfg.sim.seed + 1}),
        faults,
        hours=minutes / 120,
        progress=progress,
    )
    print(f"3/4 ingesting {normal} into {out / 'shards'}")
    report = run_ingest([normal], out / "shards", cfg.data, cfg.ingest, progress=progress)
    print("   " + report.describe().replace("\n", "\n   "))
    print(f"4/4 training a world model for up to {train_minutes:g} min into {out / 'model'}")
    tcfg = cfg.train.model_copy(update={"max_minutes": train_minutes})
    res = fit(
        cfg.model_copy(update={"train": tcfg}), out / "shards", out / "model", progress=progress
    )
    lines = [f"model: {res.path} ({res.steps} steps, {res.frames_per_s:.0f} frames/s)"]
    hs = res.val
    from foresight.model.checkpoint import horizon_steps

    for i, k in enumerate(horizon_steps(cfg.model, cfg.data.fps)):
        h = k / cfg.data.fps
        row = (
            f"  {h:>4.1f} s ahead: frame MSE {hs['frame_model'][i]:.5f} "
            f"(copy-last {hs['frame_copy_last'][i]:.5f})"
        )
        if "sensor_model" in hs:
            row += (
                f", sensors {hs['sensor_model'][i]:.3f} "
                f"(linear extrapolation {hs['sensor_linear'][i]:.3f})"
            )
        lines.append(row)
    return "\n".join(lines)
