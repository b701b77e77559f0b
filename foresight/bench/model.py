"""``foresight bench model``: inference and training throughput of the world model.

Inference is the monitor's whole per-frame step (encode, filter, roll out every horizon, decode the
horizon frames); training is the jitted train step on random windows of the configured shape.
FLOPs per frame come from XLA's cost analysis of the compiled functions. The same command runs
unchanged on a GPU, where it also reports the fraction of the device's peak.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from foresight.bench.report import section, write_section
from foresight.config import Config
from foresight.model.checkpoint import ModelBundle, build_model, horizon_steps, load_model
from foresight.model.core import Norm
from foresight.model.predictor import Predictor
from foresight.model.train import make_optimizer, make_steps

#: Dense bf16/fp32 peaks (FLOP/s) used for the fraction-of-peak column; None when unknown.
PEAKS = {"H100": 989e12, "H200": 989e12}


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return float(cost.get("flops", 0.0)) if cost else 0.0


def _bundle(cfg: Config, model: Path | None) -> ModelBundle:
    if model is not None:
        return load_model(model)
    import jax.numpy as jnp

    s = len(cfg.data.channels)
    net = build_model(cfg.model, cfg.data.image_size, s, 0)
    norm = Norm(jnp.zeros(s), jnp.ones(s), jnp.zeros(s, bool), action_index=s - 1)
    return ModelBundle(net, norm, cfg.model, cfg.data.model_dump(mode="json"))


def bench_inference(bundle: ModelBundle, batch: int, frames: int) -> dict:
    """Per-step latency and frames/s of the monitor's step for ``batch`` cameras."""
    pred = Predictor(bundle)
    s = pred.image_size
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (batch, s, s, 3), dtype=np.uint8)
    sens = rng.normal(size=(batch, pred.n_sensors)).astype(np.float32)
    carry = pred.init_carry(batch)
    lowered = pred._jit.lower(pred.params, pred.norm, carry, frame, sens)
    flops = _flops(lowered.compile()) / batch
    for _ in range(5):
        carry, fc = pred.step(carry, frame, sens)
    jax.block_until_ready(fc)
    lat = []
    n = max(frames // batch, 20)
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        carry, fc = pred.step(carry, frame, sens)
        jax.block_until_ready(fc.frame)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "batch": batch,
        "fps": n * batch / total,
        "p50_ms": 1e3 * float(np.percentile(lat, 50)),
        "p99_ms": 1e3 * float(np.percentile(lat, 99)),
        "flops_per_frame": flops,
    }


def bench_training(cfg: Config, bundle: ModelBundle, batch: int, steps: int) -> dict:
    """Training frames/s of the jitted train step on random windows."""
    graphdef, params = nnx.split(bundle.model, nnx.Param)
    tx = make_optimizer(cfg.train)
    opt = tx.init(params)
    hs = horizon_steps(cfg.model, cfg.data.fps)
    window = cfg.model.context + max(hs)
    train_step, _ = make_steps(graphdef, tx, hs, cfg.model.context)
    rng = np.random.default_rng(0)
    s = cfg.data.image_size
    fr = rng.integers(0, 255, (batch, window, s, s, 3), dtype=np.uint8)
    se = rng.normal(size=(batch, window, len(cfg.data.channels))).astype(np.float32)
    key = jax.random.key(0)
    compiled = train_step.lower(params, opt, bundle.norm, fr, se, key, 1.0).compile()
    flops = _flops(compiled) / (batch * window)
    params, opt, m = compiled(params, opt, bundle.norm, fr, se, key, 1.0)  # warm-up, compiled once
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for i in range(steps):
        params, opt, m = compiled(params, opt, bundle.norm, fr, se, jax.random.key(i), 1.0)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    return {
        "batch": batch,
        "window": window,
        "fps": steps * batch * window / dt,
        "flops_per_frame": flops,
    }


def _peak() -> tuple[str, float | None]:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    peak = next((v for k, v in PEAKS.items() if k in kind), None)
    return f"{dev.platform}: {kind} x{jax.device_count()}", peak


def bench_train_memory(cfg: Config, minutes: tuple[float, float] = (2.0, 20.0)) -> str:
    """Peak training memory on a short and a long simulated dataset (markdown rows)."""
    import tempfile

    from foresight.bench.trainmem import run_in_subprocess
    from foresight.ingest import run_ingest
    from foresight.sim.generate import simulate_to_dir

    rows = [
        "| footage | frames at model rate | shard GB | peak anonymous MB | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="foresight-mem-") as tmp:
        for m in minutes:
            d = Path(tmp) / f"m{m:g}"
            sim = cfg.sim.model_copy(update={"faults_per_hour": 0.0})
            simulate_to_dir(sim, d / "raw", hours=m / 60, progress=False)
            run_ingest([d / "raw"], d / "shards", cfg.data, cfg.ingest, progress=False)
            r = run_in_subprocess(d / "shards", cfg.preset, 15)
            rows.append(
                f"| {m:g} min | {r['frames']} | {r['gb']:.3f} | "
                f"{r['peak_anon_mb']:.0f} | {r['peak_rss_mb']:.0f} |"
            )
    return "\n".join(rows)


def bench_model(
    cfg: Config,
    out: Path,
    model: Path | None = None,
    frames: int = 500,
    train_steps: int = 20,
    memory: bool = False,
) -> str:
    """Measure inference and training throughput and write the ``model`` section."""
    bundle = _bundle(cfg, model)
    device, peak = _peak()
    on_gpu = jax.devices()[0].platform == "gpu"
    batches = (1, 16, 256, 1024) if on_gpu else (1, 16)
    inf = [bench_inference(bundle, b, frames) for b in batches]
    tb = 256 if on_gpu else cfg.train.batch_size
    tr = bench_training(cfg, bundle, tb, train_steps)
    rows = [
        "| path | cameras (batch) | frames/s | p50 ms/step | p99 ms/step | GFLOP/frame |"
        " fraction of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in inf:
        frac = f"{r['fps'] * r['flops_per_frame'] / peak:.1%}" if peak else "n/a (CPU)"
        rows.append(
            f"| monitor step | {r['batch']} | {r['fps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['flops_per_frame'] / 1e9:.3f} | {frac} |"
        )
    frac = f"{tr['fps'] * tr['flops_per_frame'] / peak:.1%}" if peak else "n/a (CPU)"
    rows.append(
        f"| training | {tr['batch']} windows x {tr['window']} | {tr['fps']:.0f} | | | "
        f"{tr['flops_per_frame'] / 1e9:.3f} | {frac} |"
    )
    d = cfg.data
    body = (
        f"Preset `{cfg.preset}`: {d.image_size}x{d.image_size} px at {d.fps} fps, horizons "
        f"{list(cfg.model.horizons)} s, deter {cfg.model.deter}, stoch {cfg.model.stoch}. "
        f"Device: {device}. A monitor step = encode one frame, filter, roll out "
        f"{max(horizon_steps(cfg.model, d.fps))} latent steps, decode "
        f"{len(horizon_steps(cfg.model, d.fps))} horizon frames.\n\n" + "\n".join(rows) + "\n"
    )
    if memory:
        body += (
            "\nTraining memory against dataset size (15 steps on each; anonymous memory is the "
            "process's own, RSS also counts memory-mapped shard pages, which are evictable page "
            "cache):\n\n" + bench_train_memory(cfg) + "\n"
        )
    name = "model-gpu" if on_gpu else "model"
    md = section(f"World model throughput ({'GPU' if on_gpu else 'CPU'})", body)
    write_section(out, name, md)
    return md
