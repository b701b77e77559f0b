"""Sensor-only world model: a small GRU that forecasts normalised sensors at a few horizons.

With no video the world model reduces to its sensor path. A GRU reads the normalised channels one
sample at a time (explicit ``carry``); from its state a linear head gives, for every horizon
``k`` (in samples) and channel, the mean and log-variance of ``x[t + k]`` (the mean is a change
from ``x[t]``). It is trained on normal data only with the beta-NLL of Seitzer et al. (2022):
Gaussian NLL with each step's weight ``stop_gradient(var) ** beta``.

Two optional guards against slow drift of a channel's level (a temperature that wanders far from
the rows the normalisation was fitted on, normal on a real pump): ``input_clip`` clips what the GRU
and the head read to +-that many standard deviations (the forecast is still a change from the
true ``x[t]``), so a level the model never saw in training does not drive it into extrapolation;
``offset_noise`` adds one random constant per channel and training window (that many standard
deviations) to inputs and targets alike, so the forecast of a change learns not to hinge on the
absolute level. Both are off by default; ``foresight bench skab`` chooses them on synthetic faults
in anomaly-free data (``realdata.skab_select``).

The hot path is pure: ``split_model`` splits the ``nnx.Module`` once; ``observe(params, carry,
x) -> carry, (mean, logvar)`` advances one sample and ``forecast_series`` scans it over a recorded
series (equal to stepping, the GRU is causal). Horizons are in samples; where the sampling is
minutes, so is the horizon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from foresight.errors import InputError

log = logging.getLogger(__name__)
LOGVAR_MIN, LOGVAR_MAX = -7.0, 5.0


@dataclass(frozen=True)
class SensorModelConfig:
    """Size and training of the sensor model; horizons and windows in samples."""

    hidden: int = 32
    horizons: tuple[int, ...] = (1, 10, 60)
    steps: int = 400
    batch: int = 32
    window: int = 96
    burn_in: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    beta: float = 0.5
    input_noise: float = 0.05
    input_clip: float | None = None  # GRU inputs clipped to +-this many sd (module docstring)
    offset_noise: float = 0.0  # sd of a random level offset per training window and channel
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.steps < 0 or self.batch < 1:
            raise InputError(f"sensor model: hidden, batch >= 1 and steps >= 0, got {self}")
        if not self.horizons or min(self.horizons) < 1:
            raise InputError(f"sensor model: horizons must be >= 1 samples, got {self.horizons}")
        if (self.input_clip is not None and self.input_clip <= 0) or self.offset_noise < 0:
            raise InputError(f"sensor model: input_clip > 0 and offset_noise >= 0, got {self}")
        if self.window <= self.burn_in + 1:
            raise InputError(f"sensor model: window must exceed burn_in + 1, got {self.window}")

    def tiny(self) -> SensorModelConfig:
        """The same model, shrunk for tests."""
        return replace(self, hidden=8, steps=5, batch=4, window=24, burn_in=2)


class SensorWorldModel(nnx.Module):
    """GRU cell plus a Gaussian head per horizon and channel."""

    def __init__(self, channels: int, cfg: SensorModelConfig, rngs: nnx.Rngs):
        h = cfg.hidden
        self.channels, self.n_h, self.hidden = channels, len(cfg.horizons), h
        self.gates = nnx.Linear(channels + h, 2 * h, rngs=rngs)
        self.cand = nnx.Linear(channels + h, h, rngs=rngs)
        self.head = nnx.Linear(h + channels, 2 * self.n_h * channels, rngs=rngs)
        self.clip = cfg.input_clip

    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """carry (B, H), x (B, S) -> carry, (mean, logvar) each (B, nH, S)."""
        xin = x if self.clip is None else jnp.clip(x, -self.clip, self.clip)
        zr = jax.nn.sigmoid(self.gates(jnp.concatenate([xin, carry], -1)))
        z, r = jnp.split(zr, 2, axis=-1)
        cand = jnp.tanh(self.cand(jnp.concatenate([xin, r * carry], -1)))
        carry = (1 - z) * carry + z * cand
        out = self.head(jnp.concatenate([carry, xin], -1))
        out = out.reshape(*x.shape[:-1], self.n_h, 2, self.channels)
        mean = x[..., None, :] + out[..., 0, :]
        logvar = LOGVAR_MIN + (LOGVAR_MAX - LOGVAR_MIN) * jax.nn.sigmoid(out[..., 1, :])
        return carry, (mean, logvar)


def make_model(channels: int, cfg: SensorModelConfig) -> SensorWorldModel:
    """Fresh weights for ``channels`` sensors."""
    if channels < 1:
        raise InputError("sensor model needs at least one channel")
    return SensorWorldModel(channels, cfg, nnx.Rngs(cfg.seed))


def split_model(model: SensorWorldModel) -> tuple[Any, Any]:
    """(graphdef, params): split once at the hot-path boundary."""
    return nnx.split(model, nnx.Param)


def init_carry(model_or_hidden: SensorWorldModel | int, batch: int = 1) -> jax.Array:
    """Zero recurrent state."""
    h = model_or_hidden if isinstance(model_or_hidden, int) else model_or_hidden.hidden
    return jnp.zeros((batch, h), jnp.float32)


@partial(jax.jit, static_argnums=0)
def observe(graphdef: Any, params: Any, carry: jax.Array, x: jax.Array):
    """One sample: carry (B, H), x (B, S) -> carry, (mean, logvar) (B, nH, S)."""
    return nnx.merge(graphdef, params)(carry, x)


@partial(jax.jit, static_argnums=0)
def _scan(graphdef: Any, params: Any, carry: jax.Array, xs: jax.Array):
    model = nnx.merge(graphdef, params)

    def body(c, x):
        return model(c, x)

    carry, (mean, logvar) = jax.lax.scan(body, carry, jnp.swapaxes(xs, 0, 1))
    return carry, jnp.swapaxes(mean, 0, 1), jnp.swapaxes(logvar, 0, 1)


def forecast_series(graphdef: Any, params: Any, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts made at every sample of one series (T, S): mean, logvar (T, nH, S)."""
    xs = np.asarray(xs, np.float32)
    if xs.ndim != 2:
        raise InputError(f"forecast_series needs (T, S), got {xs.shape}")
    hidden = nnx.merge(graphdef, params).hidden
    _, mean, logvar = _scan(graphdef, params, init_carry(hidden), jnp.asarray(xs[None]))
    return np.asarray(mean[0]), np.asarray(logvar[0])


def nll_loss(
    mean: jax.Array, logvar: jax.Array, xs: jax.Array, horizons: tuple[int, ...], burn_in: int, beta
) -> jax.Array:
    """beta-NLL of forecasts (B, T, nH, S) against the series xs (B, T, S), past the burn-in."""
    assert mean.shape == logvar.shape and mean.shape[:2] == xs.shape[:2], (mean.shape, xs.shape)
    total, count = 0.0, 0.0
    t = xs.shape[1]
    for i, k in enumerate(horizons):
        if t - k <= burn_in:
            continue
        mu, lv, y = mean[:, burn_in : t - k, i], logvar[:, burn_in : t - k, i], xs[:, burn_in + k :]
        nll = 0.5 * (lv + (y - mu) ** 2 * jnp.exp(-lv))
        w = jax.lax.stop_gradient(jnp.exp(lv)) ** beta
        total = total + jnp.sum(w * nll)
        count = count + nll.size
    return total / jnp.maximum(count, 1.0)


def _windows(series: Sequence[np.ndarray], window: int, batch: int, rng: np.random.Generator):
    """A batch of random windows (B, window, S) from series long enough to hold one."""
    long = [s for s in series if len(s) >= window]
    picks = rng.integers(0, len(long), batch)
    out = np.empty((batch, window, long[0].shape[1]), np.float32)
    for b, i in enumerate(picks):
        start = rng.integers(0, len(long[i]) - window + 1)
        out[b] = long[i][start : start + window]
    return out


@dataclass(frozen=True)
class FitResult:
    """Trained parameters and how training went."""

    graphdef: Any
    params: Any
    losses: tuple[float, ...]
    seconds: float


def fit_model(
    series: Sequence[np.ndarray],
    cfg: SensorModelConfig,
    init: FitResult | None = None,
    steps: int | None = None,
    lr: float | None = None,
) -> FitResult:
    """Train on normal, normalised series (each (T, S)); ``init`` fine-tunes earlier weights."""
    series = [np.asarray(s, np.float32) for s in series]
    if not series or any(s.ndim != 2 for s in series):
        raise InputError("sensor model: training needs (T, S) series")
    longest = max(len(s) for s in series)
    window = min(cfg.window, longest)
    if window <= cfg.burn_in + max(cfg.horizons[0], 1):
        raise InputError(f"sensor model: training series too short ({longest} samples)")
    if init is None:
        graphdef, params = split_model(make_model(series[0].shape[1], cfg))
    else:
        graphdef, params = init.graphdef, init.params
    steps = cfg.steps if steps is None else steps
    opt = optax.adamw(lr or cfg.lr, weight_decay=cfg.weight_decay)
    opt_state = opt.init(params)
    train_step = _make_train_step(graphdef, opt, cfg, window)
    rng = np.random.default_rng(cfg.seed)
    key = jax.random.PRNGKey(cfg.seed)
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        key, sub = jax.random.split(key)
        xs = jnp.asarray(_windows(series, window, cfg.batch, rng))
        params, opt_state, loss = train_step(params, opt_state, xs, sub)
        losses.append(loss)
    losses = tuple(float(v) for v in jax.device_get(losses))
    seconds = time.perf_counter() - t0
    if losses and not np.isfinite(losses[-1]):
        raise InputError("sensor model: training diverged (loss is not finite)")
    log.debug("sensor model: %d steps in %.1f s, loss %.3f", steps, seconds, losses[-1:] or 0)
    return FitResult(graphdef, params, losses, seconds)


def augment(xs: jax.Array, key: jax.Array, cfg: SensorModelConfig) -> tuple[jax.Array, jax.Array]:
    """Training windows (B, T, S) to (what the model reads, what it must forecast): input noise on
    the first; with ``offset_noise`` one random level offset per window and channel on both."""
    noisy = xs + cfg.input_noise * jax.random.normal(key, xs.shape)
    if cfg.offset_noise:
        sub = jax.random.fold_in(key, 1)
        shift = cfg.offset_noise * jax.random.normal(sub, (xs.shape[0], 1, xs.shape[2]))
        noisy, xs = noisy + shift, xs + shift
    return noisy, xs


def _make_train_step(graphdef: Any, opt: optax.GradientTransformation, cfg, window: int):
    """One jitted step over explicit params and optimiser state."""
    horizons = tuple(k for k in cfg.horizons)

    def loss_fn(params, xs, key):
        noisy, xs = augment(xs, key, cfg)
        hidden = nnx.merge(graphdef, params).hidden
        _, mean, logvar = _scan(graphdef, params, init_carry(hidden, xs.shape[0]), noisy)
        return nll_loss(mean, logvar, xs, horizons, cfg.burn_in, cfg.beta)

    @jax.jit
    def train_step(params, opt_state, xs, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step
