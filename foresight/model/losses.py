"""Loss and evaluation math of the world model, as module-level pure functions.

One window (B, T) is filtered with the posterior (reconstruction and KL terms), then from step
``context - 1`` the prior is rolled open-loop under the recorded actions and decoded at each
horizon (the predictions the monitor scores). Validation reports, per horizon, the model's mean
squared error next to the copy-last-frame baseline (frames) and the linear-extrapolation baseline
(sensors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from foresight.model.core import (
    Norm,
    _decode,
    _filter,
    _roll,
    action_of,
    prepare_sensors,
    update_background,
)
from foresight.model.network import WorldModel


def beta_nll(x: jax.Array, mean: jax.Array, logvar: jax.Array, beta: float, mask=None) -> jax.Array:
    """Gaussian NLL weighted by stop-grad(var**beta) (Seitzer et al., 2022); mean over elements."""
    assert x.shape == mean.shape, (x.shape, mean.shape)
    var = jnp.exp(logvar)
    nll = 0.5 * ((x - mean) ** 2 / var + logvar)
    nll = nll * jax.lax.stop_gradient(var**beta)
    if mask is None:
        return nll.mean()
    return (nll * mask).sum() / jnp.maximum(mask.sum() * nll.shape[-1] / mask.shape[-1], 1.0)


def kl_gauss(mu1, std1, mu2, std2) -> jax.Array:
    """KL(N(mu1, std1) || N(mu2, std2)) summed over the last axis."""
    var1, var2 = std1**2, std2**2
    kl = jnp.log(std2 / std1) + (var1 + (mu1 - mu2) ** 2) / (2 * var2) - 0.5
    return kl.sum(-1)


def filter_window(model: WorldModel, norm: Norm, frames: jax.Array, raw: jax.Array, key):
    """Posterior filtering over a window: returns dict of (B, T, .) latents and prepared inputs."""
    b, t = frames.shape[:2]
    x, mask = prepare_sensors(raw, jnp.full_like(raw[:, 0], jnp.nan), norm)
    actions = action_of(x, mask, norm)
    embed = model.encoder(
        frames.reshape(b * t, *frames.shape[2:]), x.reshape(b * t, -1), mask.reshape(b * t, -1)
    ).reshape(b, t, -1)
    cfg = model.cfg
    h0 = jnp.zeros((b, cfg.deter))
    z0 = jnp.zeros((b, max(cfg.stoch, 1)))
    a_prev = jnp.concatenate([jnp.zeros((b, 1)), actions[:, :-1]], axis=1)
    noise = (
        jnp.zeros((t, b, z0.shape[-1]))
        if key is None
        else jax.random.normal(key, (t, b, z0.shape[-1]))
    )

    alpha = cfg.background_alpha

    def step(c, inp):
        h, z, bg, n = c
        e, a, eps, frame = inp
        h, _, post = _filter(model, h, model.rssm.mask_z(z), a, e, None)
        z = post.post_mu + post.post_std * eps
        bg = update_background(bg, frame, n, alpha)
        return (h, z, bg, n + 1), (h, z, post, bg)

    sw = lambda v: jnp.swapaxes(v, 0, 1)  # noqa: E731
    bg0, n0 = jnp.zeros_like(frames[:, 0]), jnp.zeros((b,))
    _, (hs, zs, post, bgs) = jax.lax.scan(
        step, (h0, z0, bg0, n0), (sw(embed), sw(a_prev), noise, sw(frames))
    )
    return {
        "bg": sw(bgs),
        "h": sw(hs),
        "z": sw(zs),
        "post_mu": sw(post.post_mu),
        "post_std": sw(post.post_std),
        "prior_mu": sw(post.prior_mu),
        "prior_std": sw(post.prior_std),
        "x": x,
        "mask": mask,
        "actions": actions,
    }


def open_loop(model: WorldModel, f: dict, frames: jax.Array, steps: tuple[int, ...], start: int):
    """Roll the prior from ``start`` under recorded actions and decode the horizons ``steps``."""
    k = max(steps)
    acts = f["actions"][:, start : start + k]
    z0 = model.rssm.mask_z(f["post_mu"][:, start])
    hs, mus, stds = _roll(model, f["h"][:, start], z0, acts)
    idx = np.asarray(steps) - 1
    return _decode(
        model, hs[:, idx], mus[:, idx], stds[:, idx], frames[:, start], f["bg"][:, start]
    )


def loss_fn(model: WorldModel, norm: Norm, frames_u8, raw, key, steps, context):
    """Training loss of one batch of windows; returns (loss, metrics)."""
    cfg = model.cfg
    frames = frames_u8.astype(jnp.float32) / 255.0
    b, t = frames.shape[:2]
    assert context - 1 + max(steps) < t, (context, steps, t)
    f = filter_window(model, norm, frames, raw, key)
    # Reconstruction of the context steps 1..C-1 from the posterior, copying the previous frame
    # (the future steps are learned through the open-loop predictions below).
    c = context
    n = b * (c - 1)
    rec = _decode(
        model,
        f["h"][:, 1:c].reshape(n, 1, -1),
        model.rssm.mask_z(f["z"][:, 1:c]).reshape(n, 1, -1),
        f["post_std"][:, 1:c].reshape(n, 1, -1),
        frames[:, : c - 1].reshape(n, *frames.shape[2:]),
        f["bg"][:, : c - 1].reshape(n, *frames.shape[2:]),
    )
    target = frames[:, 1:c].reshape(n, 1, *frames.shape[2:])
    rec_frame = beta_nll(target, rec.frame, rec.frame_logvar, cfg.beta_nll)
    xs, ms = f["x"][:, 1:c].reshape(n, 1, -1), f["mask"][:, 1:c].reshape(n, 1, -1)
    rec_sens = _sensor_nll(xs, ms, rec, cfg.beta_nll)
    # KL balancing with free nats (DreamerV3).
    sg = jax.lax.stop_gradient
    dyn = kl_gauss(sg(f["post_mu"]), sg(f["post_std"]), f["prior_mu"], f["prior_std"])
    rep = kl_gauss(f["post_mu"], f["post_std"], sg(f["prior_mu"]), sg(f["prior_std"]))
    kl_on = 1.0 if cfg.stoch > 0 else 0.0
    kl = kl_on * (
        cfg.kl_dyn * jnp.maximum(dyn, cfg.free_nats).mean()
        + cfg.kl_rep * jnp.maximum(rep, cfg.free_nats).mean()
    )
    # Open-loop predictions at the horizons: what the monitor scores.
    s = context - 1
    fc = open_loop(model, f, frames, steps, s)
    idx = s + np.asarray(steps)
    ol_frame = beta_nll(frames[:, idx], fc.frame, fc.frame_logvar, cfg.beta_nll)
    ol_sens = _sensor_nll(f["x"][:, idx], f["mask"][:, idx], fc, cfg.beta_nll)
    over = kl_on * kl_gauss(sg(f["post_mu"][:, idx]), sg(f["post_std"][:, idx]), fc.z_mu, fc.z_std)
    loss = (
        rec_frame
        + cfg.sensor_weight * rec_sens
        + kl
        + cfg.open_loop * (ol_frame + cfg.sensor_weight * ol_sens)
        + cfg.latent_overshoot * over.mean() / max(cfg.stoch, 1)
    )
    mse = ((fc.frame - frames[:, idx]) ** 2).mean()
    metrics = {
        "loss": loss,
        "loss/rec_frame": rec_frame,
        "loss/rec_sensors": rec_sens,
        "loss/kl": dyn.mean(),
        "loss/open_frame": ol_frame,
        "loss/open_sensors": ol_sens,
        "mse/open_frame": mse,
    }
    return loss, metrics


def _sensor_nll(x, mask, fc, beta) -> jax.Array:
    """beta-NLL of the sensor head against prepared sensors, masked; zero with no sensors."""
    if x.shape[-1] == 0:
        return jnp.zeros(())
    logvar = 2 * jnp.log(fc.sensors_std)
    return beta_nll(x, fc.sensors, logvar, beta, mask)


def eval_metrics(model: WorldModel, norm: Norm, frames_u8, raw, steps, context) -> dict:
    """Per-horizon squared errors (summed over the batch) of model and baselines, deterministic."""
    frames = frames_u8.astype(jnp.float32) / 255.0
    f = filter_window(model, norm, frames, raw, None)
    s = context - 1
    fc = open_loop(model, f, frames, steps, s)
    idx = s + np.asarray(steps)
    truth = frames[:, idx]
    out = {
        "frame_model": ((fc.frame - truth) ** 2).mean(axis=(2, 3, 4)).sum(0),
        "frame_copy_last": ((frames[:, s : s + 1] - truth) ** 2).mean(axis=(2, 3, 4)).sum(0),
        "count": jnp.full((len(steps),), frames.shape[0], jnp.float32),
    }
    x, m = f["x"], f["mask"]
    if x.shape[-1]:
        k = jnp.asarray(steps, jnp.float32)[None, :, None]
        lin = x[:, s : s + 1] + k * (x[:, s : s + 1] - x[:, s - 1 : s])
        valid = m[:, idx] * m[:, s : s + 1] * m[:, s - 1 : s]
        out["sensor_model"] = (((fc.sensors - x[:, idx]) ** 2) * valid).sum((0, 2))
        out["sensor_linear"] = (((lin - x[:, idx]) ** 2) * valid).sum((0, 2))
        out["sensor_count"] = valid.sum((0, 2))
    return out
