"""``foresight bench quality``: prediction error per horizon, pretraining vs scratch, ablation.

One run on one machine:
1. footage of a *target* line (a seed and appearance the base model never saw) is simulated,
   ingested and split by file into training and held-out validation;
2. a base model is pretrained on many simulated line appearances (or ``--base`` is used);
3. the target line is trained from scratch and fine-tuned from the base, with the same budget;
4. the same budget trains a deterministic-latent ablation (``model.stoch = 0``).
Reported: per-horizon frame MSE against copy-last-frame and sensor MSE against linear
extrapolation, and how many steps fine-tuning needs to reach the from-scratch error.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from foresight.bench.report import section, write_section
from foresight.config import Config
from foresight.model.checkpoint import horizon_steps


def _steps_to_reach(history: list[dict], target: float) -> int | None:
    for h in history:
        if h["step"] > 0 and h["frame_objective"] <= target:
            return int(h["step"])
    return None


def _table(cfg: Config, runs: dict[str, dict]) -> str:
    steps = horizon_steps(cfg.model, cfg.data.fps)
    hdr = "| horizon | copy-last frame MSE | " + " | ".join(f"{k} frame MSE" for k in runs)
    hdr += " | linear-extrap. sensor MSE | " + " | ".join(f"{k} sensor MSE" for k in runs) + " |"
    rows = [hdr, "|" + "---|" * (3 + 2 * len(runs))]
    first = next(iter(runs.values()))
    for i, k in enumerate(steps):
        r = f"| {k / cfg.data.fps:.1f} s | {first['frame_copy_last'][i]:.5f} | "
        r += " | ".join(f"{v['frame_model'][i]:.5f}" for v in runs.values())
        lin = first.get("sensor_linear")
        r += f" | {lin[i]:.3f} | " if lin is not None else " | n/a | "
        r += " | ".join(
            f"{v['sensor_model'][i]:.3f}" if "sensor_model" in v else "n/a" for v in runs.values()
        )
        rows.append(r + " |")
    return "\n".join(rows)


def bench_quality(
    cfg: Config,
    out: Path,
    minutes: float,
    train_steps: int,
    base: Path | None = None,
    base_steps: int = 250,
    lines: int = 16,
    workdir: Path | None = None,
    samples: Path | None = None,
    samples_minutes: float = 5.0,
) -> str:
    """Run the comparison and write the ``quality`` section of BENCHMARKS.md."""
    from foresight.ingest import ShardDataset, run_ingest
    from foresight.model.data import SimStream
    from foresight.model.train import train_model
    from foresight.sim.generate import simulate_to_dir

    work = Path(workdir or tempfile.mkdtemp(prefix="foresight-quality-"))
    fields = type(cfg.sim).model_fields
    target = {"faults_per_hour": 0.0, "seed": 900_001}
    if "appearance_seed" in fields:
        target["appearance_seed"] = 10_000 + lines  # never among the pretraining appearances
    simulate_to_dir(
        cfg.sim.model_copy(update=target), work / "target", hours=minutes / 60, progress=False
    )
    run_ingest([work / "target"], work / "shards", cfg.data, cfg.ingest, progress=False)
    train_src, val_src = ShardDataset(work / "shards").split(cfg.train.val_fraction, seed=0)
    data = cfg.data.model_dump(mode="json")
    budget = cfg.train.model_copy(
        update={"max_minutes": None, "max_steps": train_steps, "patience": 10**6}
    )
    base_given = base is not None
    if base is None:
        base = work / "base"
        bcfg = cfg.train.model_copy(
            update={"max_minutes": None, "max_steps": base_steps, "patience": 10**6}
        )
        bval = SimStream(cfg, seed=77, lines=lines, val_windows=4 * cfg.train.batch_size)
        train_model(
            cfg.model, bcfg, data, SimStream(cfg, seed=76, lines=lines), bval, base, progress=False
        )
    scratch = train_model(
        cfg.model, budget, data, train_src, val_src, work / "scratch", progress=False
    )
    tuned = train_model(
        cfg.model, budget, data, train_src, val_src, work / "tuned", init=base, progress=False
    )
    det_cfg = cfg.model.model_copy(update={"stoch": 0})
    det = train_model(
        det_cfg, budget, data, train_src, val_src, work / "deterministic", progress=False
    )
    # Compared on the frame objective: the fine-tune keeps its base's sensor scaling, so the
    # full objectives (with sensor errors in each run's own units) do not compare across runs.
    best_scratch = min(h["frame_objective"] for h in scratch.history)
    scratch_best_step = next(
        h["step"] for h in scratch.history if h["frame_objective"] == best_scratch
    )
    reach = _steps_to_reach(tuned.history, best_scratch)
    frac = f"{reach / scratch_best_step:.0%}" if reach else "not reached in the budget"
    runs = {"fine-tuned": tuned.val, "scratch": scratch.val, "deterministic (stoch=0)": det.val}
    v = {k: np.asarray(x) for k, x in tuned.val.items()}
    beats = bool(np.all(v["frame_model"] < v["frame_copy_last"]))
    if "sensor_model" in v:
        beats = beats and bool(np.all(v["sensor_model"] < v["sensor_linear"]))
    body = (
        f"Target line: {minutes:g} min of simulated normal footage (seed and appearance never "
        f"used in pretraining), split by file into training and held-out validation. Each run "
        f"trains {train_steps} steps of {cfg.train.batch_size} windows; the base "
        + (
            f"is {base}"
            if base_given
            else f"was pretrained for {base_steps} steps over {lines} simulated line appearances"
        )
        + ".\n\n"
        f"Held-out validation, mean squared error per horizon (frames in [0, 1]; sensors in "
        f"each model's normalised units: the fine-tune keeps its base's scaling, the others "
        f"take the target footage's, so sensor columns compare only within a run):\n\n"
        f"{_table(cfg, runs)}\n\n"
        f"- fine-tuned beats both baselines at every horizon: **{'yes' if beats else 'NO'}**\n"
        f"- from scratch: best frame objective (model / copy-last MSE, mean over horizons) "
        f"{best_scratch:.4f} at step "
        f"{scratch_best_step} ({scratch.steps} steps in the budget)\n"
        + (
            f"- fine-tuned from the base reaches it at step {reach} (**{frac}** of the "
            f"from-scratch steps; {tuned.steps} steps in the budget)\n"
            if reach
            else f"- fine-tuned from the base does **not** reach it within its {tuned.steps} "
            f"steps\n"
        )
        + f"- ablation: deterministic latent objective "
        f"{min(h['objective'] for h in det.history):.4f} vs stochastic "
        f"{min(h['objective'] for h in scratch.history):.4f} "
        f"(lower is better; the detection-side ablation comes with `foresight evaluate`)\n"
    )
    if samples is not None:
        body += _samples_run(cfg, samples, samples_minutes, work)
    md = section("World model prediction quality and fine-tuning", body)
    write_section(out, "quality", md)
    return md


def _samples_run(cfg: Config, samples: Path, minutes: float, work: Path) -> str:
    """Train on recorded footage (e.g. data_samples/normal) for a wall-clock budget."""
    from foresight.model.fit import fit

    tcfg = cfg.train.model_copy(update={"max_minutes": minutes, "max_steps": 10**9})
    res = fit(
        cfg.model_copy(update={"train": tcfg}), samples, work / "samples-model", progress=False
    )
    v = {k: np.asarray(x) for k, x in res.val.items()}
    ok = bool(np.all(v["frame_model"] < v["frame_copy_last"]))
    if "sensor_model" in v:
        ok = ok and bool(np.all(v["sensor_model"] < v["sensor_linear"]))
    return (
        f"\n`foresight train --data {samples} --max-minutes {minutes:g}` (ingested on the fly, "
        f"held-out file for validation): {res.steps} steps, beats both baselines at every "
        f"horizon: **{'yes' if ok else 'NO'}**\n\n{_table(cfg, {'samples model': res.val})}\n"
    )
