"""The monitor's hot path: one jitted ``step(params, carry, frame, sensors) -> carry, Forecast``.

The network is split once into a static graph and explicit parameters. ``swap`` replaces the
parameter reference (and normalisation) between two frames; the carry survives a swap because the
architecture is checked to be identical, so a retrained model takes over without a restart.
"""

from __future__ import annotations

import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from foresight.errors import InputError
from foresight.model.checkpoint import ModelBundle, load_model
from foresight.model.core import (
    Carry,
    Forecast,
    Posterior,
    forecast,
    init_carry,
    observe,
    prepare_sensors,
)
from foresight.residuals.features import (
    Features,
    latent_features,
    pixel_features,
    sensor_features,
)


def _step(graphdef, steps, params, norm, carry, frame, raw):
    model = nnx.merge(graphdef, params)
    carry, post = observe(model, norm, carry, frame, raw)
    return carry, forecast(model, carry, steps), post


def _scored(graphdef, steps, block, metric, params, norm, carry, frame, raw, due, learn):
    """Observe, score the observation against the forecasts ``due`` now, forecast anew."""
    model = nnx.merge(graphdef, params)
    x, mask = prepare_sensors(raw[:, None], carry.raw, norm)
    carry, post = observe(model, norm, carry, frame, raw, learn)
    fc = forecast(model, carry, steps)

    def pick(field):  # horizon i of the forecast made k_i steps ago
        return jnp.stack([getattr(d, field)[:, i] for i, d in enumerate(due)], 1)

    obs = frame.astype(jnp.float32) / 255.0
    feats = Features(
        pixel=pixel_features(obs, pick("frame"), pick("frame_logvar"), block, metric),
        latent=latent_features(post.post_mu, pick("z_mu"), pick("z_std")),
        sensor=sensor_features(x[:, 0], mask[:, 0], pick("sensors"), pick("sensors_std")),
    )
    return carry, fc, feats


class Predictor:
    """Jitted observe-and-forecast over explicit parameters, for one or many cameras (batch)."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.graphdef, self.params = nnx.split(bundle.model, nnx.Param)
        self.norm = bundle.norm
        self.steps = bundle.steps
        self.image_size = int(bundle.data["image_size"])
        self.n_sensors = bundle.model.n_sensors
        self._jit = jax.jit(partial(_step, self.graphdef, self.steps))
        self._scored: dict[tuple[int, str], object] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictor:
        """Load a model directory and prepare its jitted step."""
        return cls(load_model(path))

    def init_carry(self, batch: int = 1) -> Carry:
        """A fresh carry for ``batch`` cameras."""
        return init_carry(self.bundle.model, batch, self.image_size)

    def step_full(
        self, carry: Carry, frame: np.ndarray, sensors: np.ndarray
    ) -> tuple[Carry, Forecast, Posterior]:
        """Observe frame (B, H, W, 3) uint8 and raw sensors (B, S); forecast every horizon."""
        self._check(frame)
        return self._jit(self.params, self.norm, carry, frame, sensors)

    def step_scored(
        self,
        carry: Carry,
        frame: np.ndarray,
        sensors: np.ndarray,
        due: tuple[Forecast, ...],
        learn: np.ndarray,
        block: int,
        metric: str,
    ) -> tuple[Carry, Forecast, Features]:
        """Observe, compute residual features against ``due`` (one Forecast per horizon: the
        one made that horizon ago), and forecast every horizon; the monitor's whole hot path."""
        self._check(frame)
        fn = self._scored.get((block, metric))
        if fn is None:
            fn = jax.jit(partial(_scored, self.graphdef, self.steps, block, metric))
            self._scored[(block, metric)] = fn
        return fn(self.params, self.norm, carry, frame, sensors, due, learn)

    def _check(self, frame: np.ndarray) -> None:
        if frame.shape[1:] != (self.image_size, self.image_size, 3):
            raise InputError(
                f"frame shape {frame.shape[1:]} does not match the model's "
                f"{(self.image_size, self.image_size, 3)}"
            )

    def step(self, carry: Carry, frame: np.ndarray, sensors: np.ndarray) -> tuple[Carry, Forecast]:
        """Like ``step_full`` without the posterior."""
        carry, fc, _ = self.step_full(carry, frame, sensors)
        return carry, fc

    def swap(self, bundle: ModelBundle) -> None:
        """Take new parameters between two frames (same architecture and inputs required)."""
        graphdef, params = nnx.split(bundle.model, nnx.Param)
        if graphdef != self.graphdef or bundle.steps != self.steps:
            raise InputError("cannot hot-swap: the new model's architecture or horizons differ")
        self.bundle, self.params, self.norm = bundle, params, bundle.norm
