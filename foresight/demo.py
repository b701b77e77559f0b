"""``foresight demo``: the main job on embedded defaults, with no PLC, database or camera.

**Live** (the default): the always-on monitor on the simulated line, watched by the sample model
in ``data_samples/model`` (or ``--model``), with the in-process OPC UA PLC simulator that really
slows the simulated feeder, the local store, and the operators' dashboard (Streamlit on
127.0.0.1). A newcomer sees the live picture, what the model expected, the residual trend, and
what happens when a fault starts: so that this takes a minute and not the line's natural 6 faults
an hour, the demo starts one every ``--fault-every`` seconds of line time (the fault types in
turn). Whether each is alarmed is the model's business: the sample model is small and trained
for minutes, so it misses many (see BENCHMARKS.md). It runs until Ctrl-C or ``--minutes``.

**Offline** (``--offline``): simulates a few minutes of the line (with faults and their labels),
ingests the normal footage, trains a world model for a short budget and prints how well it
predicts each horizon against the copy-last-frame and linear-extrapolation baselines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from pathlib import Path

from foresight.config import Config
from foresight.errors import ConfigError
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


def run_live_demo(
    cfg: Config,
    *,
    minutes: float | None,
    fault_every: float,
    dashboard: bool,
    env: dict[str, str] | None = None,
) -> str:
    """The monitor on the simulated line with the dashboard; returns the monitor's summary."""
    from foresight.dashboard.cli import streamlit_command
    from foresight.monitor.app import describe, run_monitor
    from foresight.sim.config import FAULT_TYPES
    from foresight.sim.line import LineSim

    if cfg.monitor.source != "sim":
        raise ConfigError("demo: monitor.source must be 'sim' (use `foresight monitor` otherwise)")
    line = LineSim(cfg.sim, seed=cfg.sim.seed)
    ui = None
    if dashboard:
        host, port = cfg.dashboard.host, cfg.dashboard.port
        ui_log = Path(cfg.monitor.health_file).with_name("dashboard.log")
        ui_log.parent.mkdir(parents=True, exist_ok=True)
        with ui_log.open("ab") as fh:
            ui = subprocess.Popen(streamlit_command(host, port), env=env, stdout=fh, stderr=fh)
        print(f"dashboard: http://{host}:{port}  (Ctrl-C stops the demo; log {ui_log})", flush=True)

    async def faults(stop: asyncio.Event) -> None:
        k, next_at = 0, fault_every
        while not stop.is_set():
            if fault_every > 0 and line.t >= next_at:
                kind = FAULT_TYPES[k % len(FAULT_TYPES)]
                line.inject_fault(kind)
                print(f"line time {line.t:6.0f} s: a {kind} fault starts", flush=True)
                k, next_at = k + 1, line.t + fault_every
            await asyncio.sleep(0.2)

    async def main() -> str:
        stop = asyncio.Event()
        if minutes:
            asyncio.get_running_loop().call_later(minutes * 60.0, stop.set)
        task = asyncio.create_task(faults(stop))
        try:
            return describe(await run_monitor(cfg, stop, line=line))
        finally:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    print(f"monitor: simulated line, model {cfg.monitor.model or 'data_samples/model'}; "
          f"health file {cfg.monitor.health_file}, store {cfg.store.path}", flush=True)  # fmt: skip
    try:
        return asyncio.run(main())
    finally:
        if ui is not None:
            ui.terminate()
            try:
                ui.wait(10)
            except subprocess.TimeoutExpired:
                ui.kill()
            if ui.returncode not in (0, -15, None):
                log.warning("dashboard exited with %s (see %s)", ui.returncode, ui_log)
