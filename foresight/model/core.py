"""Pure functions of the world model: sensor preparation, observe, rollout, loss.

The monitor's hot path is ``observe(model, carry, frame, sensors) -> carry`` followed by
``forecast(model, carry) -> Forecast``; both are wrapped in ``jax.jit`` over explicit parameters by
``foresight.model.api`` so that a retrained model is swapped by replacing one parameter reference.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from foresight.model.network import WorldModel


@struct.dataclass
class Norm:
    """Sensor normalisation shipped with the weights."""

    mean: jax.Array  # (S,) of the (differenced) channels
    std: jax.Array  # (S,)
    diff: jax.Array  # (S,) bool: cumulative counters seen as differences
    action_index: int = struct.field(pytree_node=False, default=-1)  # feeder setpoint channel


class Carry(NamedTuple):
    """Recurrent state carried from one frame to the next (batch-first)."""

    h: jax.Array  # (B, deter)
    z: jax.Array  # (B, stoch)
    action: jax.Array  # (B,) normalised action at the last observed step
    frame: jax.Array  # (B, H, W, 3) last observed frame in [0, 1]
    bg: jax.Array  # (B, H, W, 3) running-mean background in [0, 1]
    n: jax.Array  # (B,) frames observed so far
    raw: jax.Array  # (B, S) last raw sensor values (for differenced channels)


class Forecast(NamedTuple):
    """What the model expects at each horizon, made at one instant (batch-first)."""

    frame: jax.Array  # (B, nH, H, W, 3) mean in [0, 1]
    frame_logvar: jax.Array  # (B, nH, H, W, 1)
    sensors: jax.Array  # (B, nH, S) normalised
    sensors_std: jax.Array  # (B, nH, S)
    z_mu: jax.Array  # (B, nH, Z) prior mean of the latent
    z_std: jax.Array  # (B, nH, Z)


class Posterior(NamedTuple):
    """The model's belief after observing a frame: posterior and prior of the latent."""

    post_mu: jax.Array
    post_std: jax.Array
    prior_mu: jax.Array
    prior_std: jax.Array


def prepare_sensors(raw: jax.Array, prev: jax.Array, norm: Norm) -> tuple[jax.Array, jax.Array]:
    """Raw sensors (B, T, S) after ``prev`` (B, S) to normalised values and a validity mask."""
    assert raw.ndim == 3 and prev.ndim == 2, (raw.shape, prev.shape)
    before = jnp.concatenate([prev[:, None], raw[:, :-1]], axis=1)
    x = jnp.where(norm.diff, raw - before, raw)
    mask = jnp.isfinite(x)
    x = jnp.where(mask, (x - norm.mean) / norm.std, 0.0)
    return x, mask.astype(jnp.float32)


def action_of(x: jax.Array, mask: jax.Array, norm: Norm) -> jax.Array:
    """The normalised action channel of prepared sensors (zeros when there is none)."""
    if norm.action_index < 0:
        return jnp.zeros(x.shape[:-1], x.dtype)
    return x[..., norm.action_index] * mask[..., norm.action_index]


def init_carry(model: WorldModel, batch: int, image_size: int) -> Carry:
    """The carry before the first frame."""
    cfg = model.cfg
    return Carry(
        h=jnp.zeros((batch, cfg.deter)),
        z=jnp.zeros((batch, max(cfg.stoch, 1))),
        action=jnp.zeros((batch,)),
        frame=jnp.zeros((batch, image_size, image_size, 3)),
        bg=jnp.zeros((batch, image_size, image_size, 3)),
        n=jnp.zeros((batch,)),
        raw=jnp.full((batch, model.n_sensors), jnp.nan, jnp.float32),  # not weakly typed
    )


def _filter(model: WorldModel, h, z, a_prev, embed, key):
    """One posterior step: transition, prior, posterior, latent sample (mean when key is None)."""
    h = model.rssm.transition(h, z, a_prev)
    prior_mu, prior_std = model.rssm.prior(h)
    post_mu, post_std = model.rssm.post(jnp.concatenate([h, embed], -1))
    z = post_mu if key is None else post_mu + post_std * jax.random.normal(key, post_mu.shape)
    return h, z, Posterior(post_mu, post_std, prior_mu, prior_std)


def observe(
    model: WorldModel,
    norm: Norm,
    carry: Carry,
    frame_u8: jax.Array,
    raw: jax.Array,
    learn: jax.Array | None = None,
) -> tuple[Carry, Posterior]:
    """Take one observation: frame (B, H, W, 3) uint8 and raw sensors (B, S).

    ``learn`` (B,) in [0, 1] gates the background baseline: 0 for a sample flagged anomalous, so
    that what is being alarmed on never becomes part of what is expected.
    """
    frame = frame_u8.astype(jnp.float32) / 255.0
    x, mask = prepare_sensors(raw[:, None], carry.raw, norm)
    x, mask = x[:, 0], mask[:, 0]
    embed = model.encoder(frame, x, mask)
    h, z, post = _filter(model, carry.h, carry.z, carry.action, embed, None)
    action = action_of(x, mask, norm)
    raw = jnp.where(jnp.isfinite(raw), raw, carry.raw)
    bg = update_background(carry.bg, frame, carry.n, model.cfg.background_alpha, learn)
    return Carry(h, z, action, frame, bg, carry.n + 1, raw), post


def update_background(
    bg: jax.Array, frame: jax.Array, n: jax.Array, alpha: float, learn: jax.Array | None = None
) -> jax.Array:
    """EWMA of frames with rate max(alpha, 1/(n+1)): a plain mean until it has 1/alpha frames."""
    w = jnp.maximum(alpha, 1.0 / (n + 1.0))
    if learn is not None:
        w = jnp.where(n > 0, w * learn, w)
    w = w.reshape(-1, *([1] * (frame.ndim - 1)))
    return bg + w * (frame - bg)


def _roll(model: WorldModel, h, z, actions):
    """Open-loop latent rollout under ``actions`` (B, K); returns h, z mean and std per step."""

    def step(c, a):
        h, z = c
        h = model.rssm.transition(h, z, a)
        mu, std = model.rssm.prior(h)
        return (h, mu), (h, mu, std)

    _, (hs, mus, stds) = jax.lax.scan(step, (h, z), jnp.swapaxes(actions, 0, 1))
    return tuple(jnp.swapaxes(v, 0, 1) for v in (hs, mus, stds))


def forecast(
    model: WorldModel, carry: Carry, steps: tuple[int, ...], actions: jax.Array | None = None
) -> Forecast:
    """Roll the latent forward and decode the horizons ``steps`` (frames ahead, ascending)."""
    k = max(steps)
    if actions is None:
        actions = jnp.broadcast_to(carry.action[:, None], (carry.h.shape[0], k))
    hs, mus, stds = _roll(model, carry.h, carry.z, actions)
    idx = np.asarray(steps) - 1
    hs, mus, stds = hs[:, idx], mus[:, idx], stds[:, idx]
    return _decode(model, hs, mus, stds, carry.frame, carry.bg)


def _decode(model: WorldModel, hs, mus, stds, last, bg) -> Forecast:
    """Decode latent features (B, n, .) with copy sources ``last`` and ``bg`` (B, H, W, 3)."""
    b, n = hs.shape[:2]
    feat = model.features(hs, mus).reshape(b * n, -1)
    mean, logvar = model.decoder(feat, jnp.repeat(last, n, axis=0), jnp.repeat(bg, n, axis=0))
    s_mu, s_std = model.sensor_head(feat)
    shape = (b, n)
    return Forecast(
        frame=mean.reshape(*shape, *mean.shape[1:]),
        frame_logvar=logvar.reshape(*shape, *logvar.shape[1:]),
        sensors=s_mu.reshape(*shape, -1)[..., : model.n_sensors],
        sensors_std=s_std.reshape(*shape, -1)[..., : model.n_sensors],
        z_mu=mus,
        z_std=stds,
    )
