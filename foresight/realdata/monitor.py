"""The monitor's residual tracker and alarm engine, driven by the sensor-only world model.

The tracker counts time in samples: it runs at ``fps = 1``, so its smoothing time constant is a
number of samples (on SKAB, 1 s sampling, that is seconds; on NAB, 5 min, and Tennessee Eastman,
3 min, it is not). The alarm engine runs in real time, ``dt`` seconds per sample, so its delays and
its false-alarm target (per hour of normal operation) keep their meaning.

Residual features follow ``foresight.residuals.features``: ``sensor`` (nH, S) is
``log((x - mu)^2 / var + eps)`` of each channel against the forecast due now; the sensor model has
no latent state worth comparing, so the ``latent`` slot (nH,) carries the joint residual
``log(mean over channels of (x - mu)^2 / var + eps)``, which catches a small change spread over
many channels that no single channel shows; ``pixel`` is empty (nH, 0).

A forecaster catches the onset of a change and then adapts to the new level, so a sustained shift
fades from its residuals. The optional level head (``LevelHead``) is the world model's now-cast of
the normal-operation state: each channel predicted from the others at the same instant (ridge
regression fitted on normal rows, on a causal EWMA of the channels), so its residual stays up for
as long as the plant sits off its normal relations. ``with_level`` appends it as one more
"horizon" row: per channel in ``sensor``, their Mahalanobis combination (covariance of the normal
residuals) in ``latent``. With one channel the head predicts the normal mean.

``shewhart_margin`` sets the tracker's combined Shewhart-EWMA chart from normal series: a step
change far out alarms on its first sample instead of waiting for the EWMA (Tennessee Eastman's
step faults; SKAB's settings search decides for itself whether to use it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from foresight.alarms import AlarmConfig, Thresholds, calibrate_thresholds, run_engine
from foresight.errors import InputError
from foresight.residuals.config import ResidualConfig
from foresight.residuals.features import EPS, sensor_features
from foresight.residuals.tracker import Calibration, ResidualTracker, fit_calibration

#: a channel that never varies in the fit data still gets this scale (normalised units)
MIN_STD = 1e-3


@dataclass(frozen=True)
class Normaliser:
    """Per-channel centre and scale from normal data."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, name: str = "data") -> Normaliser:
        """Mean and standard deviation of (T, S) normal rows (NaN rows refused)."""
        rows = np.asarray(rows, np.float64)
        if rows.ndim != 2 or len(rows) < 2:
            raise InputError(f"{name}: need at least 2 rows of sensors to normalise")
        if not np.isfinite(rows).all():
            raise InputError(f"{name}: NaN or infinite sensor values in the fit rows")
        std = rows.std(axis=0)
        scale = np.maximum(std, MIN_STD * np.maximum(np.abs(rows.mean(axis=0)), 1.0))
        return cls(rows.mean(axis=0), scale)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Normalised rows, float32."""
        return ((np.asarray(rows, np.float64) - self.mean) / self.std).astype(np.float32)


def due_features(
    xs: np.ndarray, mean: np.ndarray, logvar: np.ndarray, horizons: Sequence[int]
) -> dict[str, np.ndarray]:
    """Residual features per sample of a series (T, S) from its forecasts (T, nH, S).

    At sample t the forecast for horizon k made at t - k is due; before that it is NaN.
    """
    t, s = xs.shape
    nh = len(horizons)
    assert mean.shape == logvar.shape == (t, nh, s), (mean.shape, xs.shape, nh)
    due_mu = np.full((t, nh, s), np.nan, np.float32)
    due_lv = np.zeros((t, nh, s), np.float32)
    for i, k in enumerate(horizons):
        if k < t:
            due_mu[k:, i] = mean[: t - k, i]
            due_lv[k:, i] = logvar[: t - k, i]
    std = np.exp(0.5 * due_lv)
    sensor = np.asarray(sensor_features(xs, np.ones_like(xs), due_mu, std), np.float32)
    with np.errstate(all="ignore"):
        d = ((xs[:, None] - due_mu) / std) ** 2
        joint = np.log(d.mean(-1) + EPS).astype(np.float32)
    return {"pixel": np.zeros((t, nh, 0), np.float32), "latent": joint, "sensor": sensor}


@dataclass(frozen=True)
class LevelConfig:
    """The level head: EWMA span (samples), ridge penalty, shrinkage of the residual correlation."""

    span: float = 10.0
    ridge: float = 0.1
    shrink: float = 0.1

    def __post_init__(self) -> None:
        if self.span < 1 or self.ridge < 0 or not 0 <= self.shrink <= 1:
            raise InputError(f"level head: span >= 1, ridge >= 0, 0 <= shrink <= 1, got {self}")


def ewma(xs: np.ndarray, span: float) -> np.ndarray:
    """Causal EWMA of (T, S) rows with time constant ``span`` samples (1: none), from the first row.

    >>> ewma(np.array([[0.0], [1.0], [1.0]]), 2.0).round(3).ravel().tolist()
    [0.0, 0.393, 0.632]
    """
    xs = np.asarray(xs, np.float64)
    if span <= 1.0:
        return xs.copy()
    a = 1.0 - math.exp(-1.0 / span)
    out = np.empty_like(xs)
    acc = xs[0].copy()
    for i, row in enumerate(xs):
        acc += a * (row - acc)
        out[i] = acc
    return out


@dataclass(frozen=True)
class LevelHead:
    """Each channel's value now from the other channels now, learnt on normal rows."""

    cfg: LevelConfig
    weights: np.ndarray  # (S, S), zero diagonal: channel j <- the others
    bias: np.ndarray  # (S,)
    scale: np.ndarray  # (S,) std of the normal residuals
    precision: np.ndarray  # (S, S) inverse of their shrunk correlation

    @classmethod
    def fit(cls, rows: np.ndarray, cfg: LevelConfig) -> LevelHead:
        """Ridge regressions on the EWMA of normal (T, S) rows."""
        y = ewma(rows, cfg.span)
        t, s = y.shape
        if t < 2:
            raise InputError("level head needs at least 2 normal rows")
        mu = y.mean(0)
        yc = y - mu
        w = np.zeros((s, s))
        for j in range(s):
            o = np.arange(s) != j
            a = yc[:, o]
            w[j, o] = np.linalg.solve(a.T @ a + cfg.ridge * np.eye(s - 1), a.T @ yc[:, j])
        bias = mu - w @ mu
        r = y - y @ w.T - bias
        scale = np.maximum(r.std(0), MIN_STD)
        corr = np.atleast_2d(np.corrcoef(r / scale, rowvar=False)) if s > 1 else np.ones((1, 1))
        corr = (1 - cfg.shrink) * np.nan_to_num(corr) + cfg.shrink * np.eye(s)
        return cls(cfg, w, bias, scale, np.linalg.inv(corr))

    def residuals(self, xs: np.ndarray) -> np.ndarray:
        """Standardised level residuals (T, S) of a series."""
        y = ewma(xs, self.cfg.span)
        return (y - y @ self.weights.T - self.bias) / self.scale

    def features(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-channel log squared residual (T, S), log Mahalanobis per channel (T,))."""
        e = self.residuals(xs)
        d2 = np.einsum("ti,ij,tj->t", e, self.precision, e) / e.shape[1]
        return np.log(e**2 + EPS).astype(np.float32), np.log(np.maximum(d2, 0) + EPS).astype(
            np.float32
        )


def with_level(
    features: dict[str, np.ndarray], head: LevelHead, xs: np.ndarray
) -> dict[str, np.ndarray]:
    """Features (nH rows) plus the level head's row (nH + 1)."""
    sensor, joint = head.features(xs)
    lat = np.concatenate([features["latent"], joint[:, None]], 1)
    return {
        "pixel": np.zeros((len(lat), lat.shape[1], 0), np.float32),
        "latent": lat,
        "sensor": np.concatenate([features["sensor"], sensor[:, None]], 1),
    }


def calibrate(
    features: Sequence[dict[str, np.ndarray]], rcfg: ResidualConfig | None = None
) -> Calibration:
    """Robust residual statistics from normal samples (leading NaN steps dropped), scaled as
    ``rcfg.tail_quantile`` says (the MAD when None or without ``rcfg``)."""
    ready = []
    for f in features:
        ok = np.isfinite(f["latent"]).all(axis=1)
        ready.append({k: v[ok] for k, v in f.items()})
    return fit_calibration(ready, tail_quantile=None if rcfg is None else rcfg.tail_quantile)


def track(
    features: dict[str, np.ndarray], cal: Calibration, cfg: ResidualConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Run the monitor's ``ResidualTracker`` over a series at one sample per 'second'.

    Returns the smoothed score and the instant score per sample (NaN while nothing is due).
    """
    tracker = ResidualTracker(cfg, cal, fps=1.0)
    n = len(features["latent"])
    score, instant = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        res = tracker.update({k: v[i] for k, v in features.items()}, learn=True)
        score[i], instant[i] = res.score, res.instant
    return score, instant


def thresholds(
    cfg: AlarmConfig, scores: Sequence[np.ndarray], dt: float = 1.0
) -> tuple[Thresholds, dict]:
    """Label-free alarm thresholds from normal score series, ``dt`` seconds per sample."""
    series = [(dt * np.arange(len(s), dtype=np.float64), np.asarray(s, np.float64)) for s in scores]
    return calibrate_thresholds(cfg, series)


def alarms(
    cfg: AlarmConfig, thr: Thresholds, scores: np.ndarray, dt: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The alarm engine over one series: (in slow-down per sample, slow-down start indices)."""
    t = dt * np.arange(len(scores), dtype=np.float64)
    _, alarm, events = run_engine(cfg, thr, t, np.asarray(scores, np.float64))
    starts = np.array([int(round(at / dt)) for at, c in events if c.reason == "slowdown"], int)
    return alarm, starts


def alarm_config(per_hour: float, **delays: float) -> AlarmConfig:
    """AlarmConfig for a target of ``per_hour`` false alarms per hour of normal operation.

    The engine runs in real time (``dt`` seconds per sample), so ``delays`` are seconds; unlike
    the line's defaults nothing is held back (no on-delay, dwell, ramp, re-alarm time or hourly
    cap) and nothing times out (the alarm does not change what the model sees) unless given
    here; the off-delay defaults to 1 s because ``calibrate_thresholds`` divides by the engine's
    dead time (off-delay + ramp + re-alarm), which must not be 0.
    """
    defaults = {
        "on_delay_s": 0.0,
        "off_delay_s": 1.0,
        "min_slowdown_s": 0.0,
        "recover_ramp_s": 0.0,
        "realarm_s": 0.0,
        "settle_s": 0.0,
        "max_slowdowns_per_hour": 3600,
        "max_slowdown_s": None,
    }
    defaults.update(delays)
    per_shift = per_hour * 8.0
    if not math.isfinite(per_shift) or per_shift <= 0:
        raise InputError(f"false-alarm target must be positive, got {per_hour} per hour")
    return AlarmConfig(false_alarms_per_shift=min(per_shift, 1000.0), shift_hours=8.0, **defaults)


def shewhart_margin(
    features: Sequence[dict[str, np.ndarray]],
    cal: Calibration,
    cfg: ResidualConfig,
    quantile: float = 0.99,
) -> float:
    """The combined chart's margin from normal series: instant and EWMA scores then exceed their
    own ``quantile`` level equally often, so each arm adds about as many normal exceedances
    (clipped to 0..20).
    """
    if not 0.5 < quantile < 1.0:
        raise InputError(f"Shewhart quantile must be in (0.5, 1), got {quantile}")
    plain = cfg.model_copy(update={"shewhart_margin": None})
    runs = [track(f, cal, plain) for f in features]
    smooth = np.concatenate([r[0] for r in runs])
    instant = np.concatenate([r[1] for r in runs])
    gap = float(np.nanquantile(instant, quantile) - np.nanquantile(smooth, quantile))
    return min(max(gap, 0.0), 20.0)
