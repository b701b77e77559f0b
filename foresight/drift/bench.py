"""``foresight bench drift``: the false-drift rate on long normal runs, into BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from foresight.bench.report import section, write_section
from foresight.config import Config
from foresight.drift.config import DriftConfig
from foresight.drift.run import false_drift_rate


def bench_drift(
    cfg: Config, dcfg: DriftConfig, model: Path, out: Path, *, hours: float, runs: int
) -> str:
    """Scan ``runs`` x ``hours`` of normal simulated operation; write and return the section."""
    r = false_drift_rate(model, cfg.sim, dcfg, hours=hours, runs=runs, progress=True)
    lo, hi = r["per_day_ci"]
    body = (
        "| detector | sample | line hours | drift events | per 24 h (95 % CI) | kinds |\n"
        "|---|---|---|---|---|---|\n"
        f"| {r['detector']} (delta {dcfg.delta}, threshold {dcfg.threshold}) "
        f"| {dcfg.sample_seconds:g} s | {r['hours']:.2f} ({runs} runs) | {r['events']} "
        f"| {r['per_day']:.2f} ({lo:.2f} to {hi:.2f}) | {', '.join(r['kinds']) or '-'} |\n\n"
        f"Model `{model}`; simulated line: appearance seed {cfg.sim.appearance_seed}, "
        f"{cfg.sim.fps:g} fps, run seeds {cfg.sim.seed + 1000}..{cfg.sim.seed + 999 + runs} "
        "(as `false_drift_rate` draws them), with no faults, wear, lighting or supplier change; "
        "every event on such footage is a false drift."
    )
    md = section("Drift: false-drift rate on normal runs", body)
    write_section(out, "drift", md)
    return md
