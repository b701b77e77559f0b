"""The world model's network: conv encoder, action-conditioned RSSM, frame decoder, sensor head.

Latent state = deterministic GRU state ``h`` (what is certain: belt phase, carton positions) plus a
Gaussian stochastic part ``z`` (what is not: whether a hand will pass, a carton's jitter). The
prior ``p(z_t | h_t)`` predicts the future; the posterior ``q(z_t | h_t, e_t)`` corrects it with the
observed frame. The frame decoder predicts a mean image as a learned per-pixel blend of four
sources: the last observed frame as it is (right for a periodic line at whole periods), the same
frame warped by a predicted flow (the conveyor's motion), a running-mean background (the static
scene with camera noise averaged out) and a generated image; plus a per-pixel log-variance, so that
normal but unpredictable motion is predicted as uncertain rather than scored as anomalous.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from foresight.model.config import ModelConfig

LOGVAR_MIN, LOGVAR_MAX = -9.0, 2.0
STD_MIN = 0.1


class Encoder(nnx.Module):
    """Frames (B, H, W, 3) in [0, 1] and normalised sensors to an embedding (B, embed)."""

    def __init__(self, cfg: ModelConfig, image_size: int, n_sensors: int, *, rngs: nnx.Rngs):
        chans = (3, *cfg.conv)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (4, 4), strides=2, rngs=rngs)
                for a, b in zip(chans, chans[1:], strict=False)
            ]
        )
        side = image_size // 2 ** len(cfg.conv)
        self.flat = side * side * cfg.conv[-1]
        self.sensor_in = nnx.Linear(2 * n_sensors, cfg.hidden, rngs=rngs)
        self.out = nnx.Linear(self.flat + cfg.hidden, cfg.embed, rngs=rngs)
        self.norm = nnx.LayerNorm(cfg.embed, rngs=rngs)

    def __call__(self, frame: jax.Array, sensors: jax.Array, mask: jax.Array) -> jax.Array:
        x = frame - 0.5
        for conv in self.convs:
            x = jax.nn.silu(conv(x))
        x = x.reshape(x.shape[0], -1)
        s = jax.nn.silu(self.sensor_in(jnp.concatenate([sensors * mask, mask], -1)))
        return self.norm(jax.nn.silu(self.out(jnp.concatenate([x, s], -1))))


class Decoder(nnx.Module):
    """Latent feature (B, F), last frame and background to a frame mean and log-variance."""

    def __init__(self, cfg: ModelConfig, image_size: int, feat: int, *, rngs: nnx.Rngs):
        self.side = image_size // 2 ** len(cfg.conv)
        self.c0 = cfg.conv[-1]
        self.inp = nnx.Linear(feat, self.side * self.side * self.c0, rngs=rngs)
        chans = (*cfg.conv[::-1][1:], 16)
        ins = (self.c0, *chans[:-1])
        self.deconvs = nnx.List(
            [
                nnx.ConvTranspose(a, b, (4, 4), strides=2, rngs=rngs)
                for a, b in zip(ins, chans, strict=True)
            ]
        )
        # The head also sees the copy sources, so "static here: take the background" is local.
        self.head = nnx.Conv(chans[-1] + 9, 10, (3, 3), rngs=rngs)
        # Flow starts at exactly zero (a plain copy) and is learned only where motion pays.
        self.head.kernel[...] = self.head.kernel[...].at[..., 8:10].set(0.0)

    def __call__(
        self, feat: jax.Array, last: jax.Array, background: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        x = jax.nn.silu(self.inp(feat)).reshape(feat.shape[0], self.side, self.side, self.c0)
        for deconv in self.deconvs:
            x = jax.nn.silu(deconv(x))
        x = self.head(jnp.concatenate([x, last - 0.5, background - 0.5, last - background], -1))
        gen = jax.nn.sigmoid(x[..., :3])
        # Sources: last frame, last frame moved by a predicted flow, background, generated.
        mix = jax.nn.softmax(x[..., 3:7] + jnp.array([2.0, 0.0, 0.0, -1.0]), axis=-1)
        moved = warp(last, x[..., 8:10])
        srcs = (last, moved, background, gen)
        mean = sum(mix[..., i : i + 1] * src for i, src in enumerate(srcs))
        logvar = jnp.clip(x[..., 7:8] - 5.0, LOGVAR_MIN, LOGVAR_MAX)
        return mean, logvar


def warp(img: jax.Array, flow: jax.Array) -> jax.Array:
    """Sample ``img`` (N, H, W, C) bilinearly at (y - flow_y, x - flow_x); edges clamped."""
    n, h, w, c = img.shape
    assert flow.shape == (n, h, w, 2), (img.shape, flow.shape)
    ys, xs = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    sx = jnp.clip(xs[None] - flow[..., 0], 0, w - 1)
    sy = jnp.clip(ys[None] - flow[..., 1], 0, h - 1)
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1i, y1i = jnp.minimum(x0i + 1, w - 1), jnp.minimum(y0i + 1, h - 1)
    flat = img.reshape(n, h * w, c)

    def at(yi, xi):
        idx = (yi * w + xi).reshape(n, h * w, 1)
        return jnp.take_along_axis(flat, idx, axis=1).reshape(n, h, w, c)

    return (
        at(y0i, x0i) * (1 - wx) * (1 - wy)
        + at(y0i, x1i) * wx * (1 - wy)
        + at(y1i, x0i) * (1 - wx) * wy
        + at(y1i, x1i) * wx * wy
    )


class Gaussian(nnx.Module):
    """An MLP to the mean and standard deviation of a diagonal Gaussian."""

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(din, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, 2 * dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mu, raw = jnp.split(self.l2(jax.nn.silu(self.l1(x))), 2, axis=-1)
        return mu, jax.nn.softplus(raw) + STD_MIN


class RSSM(nnx.Module):
    """Recurrent state-space model: h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]), p(z|h), q(z|h, e)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.stoch = cfg.stoch
        self.inp = nnx.Linear(max(cfg.stoch, 1) + 1, cfg.hidden, rngs=rngs)
        self.gru = nnx.GRUCell(cfg.hidden, cfg.deter, rngs=rngs)
        zdim = max(cfg.stoch, 1)
        self.prior = Gaussian(cfg.deter, cfg.hidden, zdim, rngs=rngs)
        self.post = Gaussian(cfg.deter + cfg.embed, cfg.hidden, zdim, rngs=rngs)

    def transition(self, h: jax.Array, z: jax.Array, action: jax.Array) -> jax.Array:
        """Deterministic step of the GRU state under the previous latent and action."""
        x = jax.nn.silu(self.inp(jnp.concatenate([z, action[..., None]], -1)))
        h, _ = self.gru(h, x)
        return h

    def mask_z(self, z: jax.Array) -> jax.Array:
        """Zero the stochastic part when the model is configured deterministic (stoch = 0)."""
        return z if self.stoch > 0 else jnp.zeros_like(z)


class WorldModel(nnx.Module):
    """Encoder, RSSM, frame decoder and sensor head of one line's world model."""

    def __init__(self, cfg: ModelConfig, image_size: int, n_sensors: int, *, rngs: nnx.Rngs):
        side = image_size / 2 ** len(cfg.conv)
        if side < 1 or side != int(side):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**len(model.conv) = "
                f"{2 ** len(cfg.conv)}"
            )
        self.cfg = cfg
        self.n_sensors = n_sensors
        self.encoder = Encoder(cfg, image_size, n_sensors, rngs=rngs)
        self.rssm = RSSM(cfg, rngs=rngs)
        feat = cfg.deter + max(cfg.stoch, 1)
        self.decoder = Decoder(cfg, image_size, feat, rngs=rngs)
        self.sensor_head = Gaussian(feat, cfg.hidden, max(n_sensors, 1), rngs=rngs)

    def features(self, h: jax.Array, z: jax.Array) -> jax.Array:
        """Concatenated latent features that the heads read."""
        return jnp.concatenate([h, self.rssm.mask_z(z)], -1)
