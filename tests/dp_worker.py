"""Run 3 train steps on the toy belt and save the parameters (for the data-parallel test)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from model_helpers import sources  # noqa: E402

from foresight.config import load_config  # noqa: E402
from foresight.model.checkpoint import build_model  # noqa: E402
from foresight.model.train import _mesh_shardings, compute_norm, make_optimizer, make_steps  # noqa: E402

cfg = load_config(preset="tiny", overrides=["train.batch_size=8", "model.stoch=0"])
tr, _ = sources(cfg.data.image_size, cfg.data.window)
model = build_model(cfg.model, cfg.data.image_size, 6, 0)
norm = compute_norm(tr, cfg.model, 0)
graphdef, params = nnx.split(model, nnx.Param)
tx = make_optimizer(cfg.train)
opt = tx.init(params)
rep, split, batch = _mesh_shardings(8)
params, opt, norm = jax.device_put((params, opt, norm), rep)
steps = (1, 5, 10)
train_step, _ = make_steps(graphdef, tx, steps, cfg.model.context)
it = tr.batches(batch, np.random.default_rng(0), cfg.data.window)
for i in range(3):
    f, s = next(it)
    f = jax.make_array_from_process_local_data(split, f)
    s = jax.make_array_from_process_local_data(split, s)
    params, opt, _ = train_step(params, opt, norm, f, s, jax.random.key(i), 1.0)
flat = {
    "/".join(map(str, k)): np.asarray(v)
    for k, v in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(jax.device_get(params)))[0]
}
flat = {k.replace("'", "").replace("[", "").replace("]", ""): v for k, v in flat.items()}
np.savez(sys.argv[1], devices=jax.device_count(), **flat)
