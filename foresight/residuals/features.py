"""Raw residual features of one observation against the forecasts due at its instant (pure, jitted).

At model step ``t`` the forecast made at ``t - k_i`` for horizon ``i`` (``k_i`` steps ahead) is
due. For each due horizon the features are:

- ``pixel`` (B, nH, R): log of the mean, over each ``block`` x ``block`` region, of the squared
  error divided by the model's own predicted variance (``nll``), or not (``mse``), or of the
  squared high-passed log-brightness ratio (``hp``, the default: blind to shadows and dimming);
- ``latent`` (B, nH): log of the mean squared distance of the posterior latent mean from the
  predicted prior, in units of the predicted prior spread;
- ``sensor`` (B, nH, S): log of the squared error of each normalised sensor over its predicted
  variance (NaN where the sensor is missing).

Logs make the heavy-tailed errors close to symmetric, so robust per-cell statistics (median, MAD
and a high quantile: ``residuals.tracker``) calibrate them well.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-6
HP_FLOOR = 0.03  #: brightness floor of the ``hp`` log ratio (dark pixels are noisy)


class Features(NamedTuple):
    """Raw residual features at one instant (batch-first); NaN where not available."""

    pixel: jax.Array  # (B, nH, R)
    latent: jax.Array  # (B, nH)
    sensor: jax.Array  # (B, nH, S)


def block_mean(x: jax.Array, block: int) -> jax.Array:
    """Mean over ``block`` x ``block`` regions of (..., H, W) to (..., R), row-major regions."""
    *lead, h, w = x.shape
    assert h % block == 0 and w % block == 0, (x.shape, block)
    x = x.reshape(*lead, h // block, block, w // block, block).mean(axis=(-3, -1))
    return x.reshape(*lead, -1)


def box_blur(x: jax.Array, k: int) -> jax.Array:
    """Mean over a ``k`` x ``k`` neighbourhood of (..., H, W), edges averaging what is inside."""
    lead = x.ndim - 2
    dims, strides = (1,) * lead + (k, k), (1,) * x.ndim
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, "SAME")
    return total / _window_counts(x.shape[-2], x.shape[-1], k)


def _window_counts(h: int, w: int, k: int) -> np.ndarray:
    """Pixels of the frame inside each ``k`` x ``k`` SAME window (a trace-time constant)."""

    def one(n: int) -> np.ndarray:
        i = np.arange(n)
        return np.minimum(i + k // 2, n - 1) - np.maximum(i - k // 2, 0) + 1

    return np.outer(one(h), one(w)).astype(np.float32)


def highpass_kernel(size: int) -> int:
    """Odd blur width of the ``hp`` metric: about 1/7 of the frame (9 px at 64 px)."""
    return 2 * max(1, round(size / 14)) + 1


def pixel_features(obs, mean, logvar, block: int, metric: str) -> jax.Array:
    """obs (B, H, W, 3), due means (B, nH, H, W, 3), logvars (B, nH, H, W, 1) to (B, nH, R).

    ``hp`` compares log brightness after removing its local mean: a shadow or a light that
    dims a whole area (a smooth multiplicative change) cancels, an edge that moved does not.
    """
    assert obs.ndim == 4 and mean.ndim == 5, (obs.shape, mean.shape)
    if metric == "hp":
        ratio = jnp.log(obs.mean(-1)[:, None] + HP_FLOOR) - jnp.log(mean.mean(-1) + HP_FLOOR)
        hp = ratio - box_blur(ratio, highpass_kernel(obs.shape[1]))
        return jnp.log(block_mean(hp**2, block) + EPS)
    err = ((obs[:, None] - mean) ** 2).mean(-1)
    if metric == "nll":
        err = err / jnp.exp(logvar[..., 0])
    return jnp.log(block_mean(err, block) + EPS)


def latent_features(post_mu, z_mu, z_std) -> jax.Array:
    """Posterior mean (B, Z) against due priors (B, nH, Z) to (B, nH)."""
    d = ((post_mu[:, None] - z_mu) / z_std) ** 2
    return jnp.log(d.mean(-1) + EPS)


def sensor_features(x, mask, s_mu, s_std) -> jax.Array:
    """Normalised sensors (B, S) with mask against due predictions (B, nH, S) to (B, nH, S)."""
    d = ((x[:, None] - s_mu) / s_std) ** 2
    return jnp.where(mask[:, None] > 0, jnp.log(d + EPS), jnp.nan)


def copy_last_features(obs, past, block: int) -> jax.Array:
    """The copy-last-frame baseline: obs (B, H, W, 3) against past frames (B, nH, H, W, 3)."""
    err = ((obs[:, None] - past) ** 2).mean(-1)
    return jnp.log(block_mean(err, block) + EPS)
