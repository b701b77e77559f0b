"""Baseline scorers measured in the same run as Foresight: frame differencing and sensor limits.

Each scorer is ``fit`` once on normal footage, then ``score(frames, sensors)`` returns one causal
score per model step for a whole clip (``score[t]`` uses samples ``<= t`` only; NaN where it is
undefined), so the same alarm calibration and engine can be applied to every method.

Choices: ``SensorSigma`` ignores the action channel (the feeder setpoint is a command, not a
measurement) while ``SensorPCA`` keeps it (it explains the speed-driven variation of the other
channels). Channels that are constant or never measured in the fit data are dropped. The PCA
T-squared limit uses the F distribution (new observation); the Q (SPE) limit uses
Jackson-Mudholkar, falling back to Box's scaled chi-squared when its ``h0 <= 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import stats

from foresight.errors import InputError
from foresight.schema import ACTION_CHANNEL, SENSOR_CHANNELS

Clip = tuple[np.ndarray, np.ndarray]
#: Counter channels whose step difference (not the cumulative value) is scored.
COUNTER_CHANNELS: tuple[str, ...] = ("photo_eye_count",)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB frames


class Scorer(Protocol):
    """A baseline: fit on normal clips, then a causal per-step score for a whole clip."""

    name: str

    @property
    def available(self) -> bool:
        """False when the scorer has nothing to score (e.g. no sensors); scores are then NaN."""
        ...

    def fit(self, clips: Iterable[Clip]) -> Scorer:
        """Learn normal statistics from (frames, sensors) clips; returns self."""
        ...

    def score(self, frames: np.ndarray | None, sensors: np.ndarray | None) -> np.ndarray:
        """Causal score per step, shape (T,), NaN where undefined."""
        ...


def causal_ewma(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted moving average that skips NaN (holds the last value)."""
    if not 0 < alpha <= 1:
        raise InputError(f"causal_ewma: alpha must be in (0, 1], got {alpha}")
    x = np.asarray(x, dtype=float).ravel()
    out = np.full(x.shape, np.nan)
    y = math.nan
    for i, v in enumerate(x):
        if math.isfinite(v):
            y = v if math.isnan(y) else alpha * v + (1 - alpha) * y
        out[i] = y
    return out


def _nanmax_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise max ignoring NaN; NaN for rows with no finite value (no warning)."""
    out = np.full(z.shape[0], np.nan)
    if z.shape[1] == 0:
        return out
    finite = np.isfinite(z)
    any_ = finite.any(axis=1)
    out[any_] = np.where(finite, z, -np.inf)[any_].max(axis=1)
    return out


# --------------------------------------------------------------------------- frame differencing


@dataclass(frozen=True)
class _FrameStats:
    shape: tuple[int, int]
    median: np.ndarray  # (h, w) per block
    scale: np.ndarray  # (h, w) per block: 1.4826 * MAD, floored


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    return frames


def block_diffs(frames: np.ndarray, block: int = 8, chunk: int = 256) -> np.ndarray:
    """Per block, mean |grey(t) - grey(t-1)|: shape (T, H // block, W // block), row 0 NaN."""
    frames = _check_frames(frames)
    n, height, width = frames.shape[:3]
    h, w = height // block, width // block
    if h == 0 or w == 0:
        raise InputError(f"frames of {height}x{width} are smaller than one {block}px block")
    out = np.full((n, h, w), np.nan, np.float32)
    prev = None
    for s in range(0, n, chunk):
        part = frames[s : s + chunk, : h * block, : w * block].astype(np.float32)
        grey = part @ _LUMA
        seq = grey if prev is None else np.concatenate([prev[None], grey])
        diff = np.abs(np.diff(seq, axis=0)).reshape(-1, h, block, w, block).mean(axis=(2, 4))
        out[s + (prev is None) : s + part.shape[0]] = diff
        prev = grey[-1]
    return out


class FrameDiff:
    """Frame differencing: per-block change, robustly normalised; score = max block z."""

    name = "frame_diff"

    def __init__(self, block: int = 8, min_scale: float = 0.5, max_rows: int = 100_000) -> None:
        """``min_scale`` floors the per-block spread (grey levels); fit keeps <= ~max_rows steps."""
        if block < 1 or min_scale <= 0 or max_rows < 10:
            raise InputError("FrameDiff: need block >= 1, min_scale > 0 and max_rows >= 10")
        self.block, self.min_scale, self.max_rows = block, min_scale, max_rows
        self._stats: _FrameStats | None = None

    @property
    def available(self) -> bool:
        """True once fitted."""
        return self._stats is not None

    def fit(self, clips: Iterable[Clip]) -> FrameDiff:
        """Learn each block's median and MAD of frame-to-frame change on normal clips."""
        rows: list[np.ndarray] = []
        stride, kept, shape = 1, 0, None
        for frames, _ in clips:
            frames = _check_frames(frames)
            if shape is not None and frames.shape[1:3] != shape:
                raise InputError(f"FrameDiff.fit: frame size {frames.shape[1:3]} != {shape}")
            shape = frames.shape[1:3]
            d = block_diffs(frames, self.block)[1::stride]
            rows.append(d)
            kept += d.shape[0]
            if kept > 2 * self.max_rows:  # bound memory: halve what is kept, double the stride
                rows = [np.concatenate(rows)[::2]]
                kept, stride = rows[0].shape[0], stride * 2
        if shape is None or kept == 0:
            raise InputError("FrameDiff.fit: no clip with at least two frames")
        data = np.concatenate(rows)
        median = np.median(data, axis=0)
        mad = np.median(np.abs(data - median), axis=0)
        scale = np.maximum(1.4826 * mad, self.min_scale)
        self._stats = _FrameStats((int(shape[0]), int(shape[1])), median, scale)
        return self

    def block_scores(self, frames: np.ndarray) -> np.ndarray:
        """Robust z of each block's change, shape (T, h, w); row 0 NaN (a heatmap per step)."""
        if self._stats is None:
            raise InputError("FrameDiff.score called before fit")
        frames = _check_frames(frames)
        if frames.shape[1:3] != self._stats.shape:
            raise InputError(f"frame size {frames.shape[1:3]} != fitted {self._stats.shape}")
        return (block_diffs(frames, self.block) - self._stats.median) / self._stats.scale

    def score(self, frames: np.ndarray | None, sensors: np.ndarray | None = None) -> np.ndarray:
        """Max block z per step (causal: uses frames t-1 and t); sensors are ignored."""
        if frames is None:
            raise InputError("FrameDiff needs frames")
        z = self.block_scores(frames)
        return _nanmax_rows(z.reshape(z.shape[0], -1))


# --------------------------------------------------------------------------- sensors


@dataclass(frozen=True)
class _Layout:
    channels: tuple[str, ...]
    counters: tuple[str, ...]
    exclude: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = set(self.counters + self.exclude) - set(self.channels)
        if unknown:
            raise InputError(f"counter/excluded channels {sorted(unknown)} not in channels")

    @classmethod
    def make(
        cls,
        channels: tuple[str, ...],
        counters: tuple[str, ...] | None,
        exclude: tuple[str, ...] | None,
        default_exclude: tuple[str, ...],
    ) -> _Layout:
        """Defaults (None) keep only the default names present in ``channels``."""
        channels = tuple(channels)
        if counters is None:
            counters = tuple(c for c in COUNTER_CHANNELS if c in channels)
        if exclude is None:
            exclude = tuple(c for c in default_exclude if c in channels)
        return cls(channels, tuple(counters), tuple(exclude))

    def prepare(self, sensors: np.ndarray | None, steps: int | None = None) -> np.ndarray:
        """(T, C) float64 of the used channels, counters differenced (first step NaN)."""
        used = [c for c in self.channels if c not in self.exclude]
        if sensors is None:
            return np.full((steps or 0, 0), np.nan)
        x = np.asarray(sensors, dtype=np.float64)
        if x.ndim != 2:
            raise InputError(f"sensors must have shape (T, S), got {x.shape}")
        if x.shape[1] == 0:
            return np.full((x.shape[0], 0), np.nan)
        if x.shape[1] != len(self.channels):
            raise InputError(f"sensors have {x.shape[1]} columns, expected {self.channels}")
        cols = []
        for name in used:
            v = x[:, self.channels.index(name)]
            if name in self.counters:
                v = np.concatenate([[np.nan], np.diff(v)])
                v[v < 0] = np.nan  # a counter reset is not a negative production rate
            cols.append(v)
        return np.stack(cols, axis=1)


def _collect(layout: _Layout, clips: Iterable[Clip]) -> np.ndarray:
    parts = [layout.prepare(s) for _, s in clips]
    parts = [p for p in parts if p.shape[1] > 0]
    if not parts:
        return np.zeros((0, 0))
    return np.concatenate(parts)


def _usable(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns measured at least twice with a non-negligible spread: (cols, mean, std)."""
    if data.size == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    count = np.isfinite(data).sum(axis=0)
    safe = np.where(np.isfinite(data), data, 0.0)
    mean = safe.sum(axis=0) / np.maximum(count, 1)
    var = (np.where(np.isfinite(data), data - mean, 0.0) ** 2).sum(axis=0)
    std = np.sqrt(var / np.maximum(count - 1, 1))
    ok = (count >= 2) & (std > 1e-9 * np.maximum(1.0, np.abs(mean)))
    cols = np.flatnonzero(ok)
    return cols, mean[cols], std[cols]


class SensorSigma:
    """Per-channel k-sigma: score = max |z| / k over channels (1.0 = the classic 3-sigma line)."""

    name = "sensor_3sigma"

    def __init__(
        self,
        channels: tuple[str, ...] = SENSOR_CHANNELS,
        counters: tuple[str, ...] | None = None,
        exclude: tuple[str, ...] | None = None,
        k: float = 3.0,
    ) -> None:
        """Channels in column order; counters (default photo-eye) differenced, action excluded."""
        if k <= 0:
            raise InputError(f"SensorSigma: k must be > 0, got {k}")
        self.layout = _Layout.make(channels, counters, exclude, (ACTION_CHANNEL,))
        self.k = k
        self._fit: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def available(self) -> bool:
        """True when fitted with at least one usable channel."""
        return self._fit is not None and self._fit[0].size > 0

    def fit(self, clips: Iterable[Clip]) -> SensorSigma:
        """Learn each channel's mean and standard deviation on normal clips."""
        self._fit = _usable(_collect(self.layout, clips))
        return self

    def z(self, sensors: np.ndarray | None, steps: int | None = None) -> np.ndarray:
        """Per-channel z of the usable channels, shape (T, C); NaN where not measured."""
        x = self.layout.prepare(sensors, steps)
        if not self.available or x.shape[1] == 0:
            return np.full((x.shape[0], 0), np.nan)
        cols, mean, std = self._fit
        return (x[:, cols] - mean) / std

    def score(self, frames: np.ndarray | None, sensors: np.ndarray | None) -> np.ndarray:
        """max |z| / k per step; NaN when no channel is measured at that step."""
        steps = None if frames is None else len(frames)
        return _nanmax_rows(np.abs(self.z(sensors, steps))) / self.k


@dataclass(frozen=True)
class _PcaFit:
    cols: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    loadings: np.ndarray  # (C, k)
    eigvals: np.ndarray  # (k,) kept
    t2_limit: float
    q_limit: float | None  # None when every component is kept (Q is identically 0)


def q_limit(residual_eigvals: np.ndarray, conf: float = 0.99) -> float | None:
    """Jackson-Mudholkar limit of Q (SPE); Box's g*chi2(h) when h0 <= 0; None if no residual."""
    lam = np.asarray(residual_eigvals, dtype=float)
    lam = lam[lam > 0]
    if lam.size == 0 or lam.sum() < 1e-12:
        return None
    th1, th2, th3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    h0 = 1 - 2 * th1 * th3 / (3 * th2**2)
    if h0 <= 0:
        return float(th2 / th1 * stats.chi2.ppf(conf, th1**2 / th2))
    c = float(stats.norm.ppf(conf))
    inner = c * math.sqrt(2 * th2 * h0**2) / th1 + 1 + th2 * h0 * (h0 - 1) / th1**2
    return th1 * inner ** (1 / h0)


def t2_limit(n: int, k: int, conf: float = 0.99) -> float:
    """Hotelling T-squared limit for a new observation, from the F distribution."""
    if n - k < 1:
        raise InputError(f"SensorPCA: need more than {k} complete fit samples, got {n}")
    return k * (n - 1) * (n + 1) / (n * (n - k)) * float(stats.f.ppf(conf, k, n - k))


class SensorPCA:
    """PCA on standardised sensors: score = max(T2 / T2_limit, Q / Q_limit) (limits at 99 %)."""

    name = "sensor_pca"

    def __init__(
        self,
        channels: tuple[str, ...] = SENSOR_CHANNELS,
        counters: tuple[str, ...] | None = None,
        exclude: tuple[str, ...] | None = None,
        variance: float = 0.95,
        conf: float = 0.99,
    ) -> None:
        """Fewest components explaining ``variance``, limits at ``conf``; counters differenced."""
        if not (0 < variance <= 1 and 0 < conf < 1):
            raise InputError("SensorPCA: need 0 < variance <= 1 and 0 < conf < 1")
        self.layout = _Layout.make(channels, counters, exclude, ())
        self.variance, self.conf = variance, conf
        self._fit: _PcaFit | None = None

    @property
    def available(self) -> bool:
        """True when fitted with at least one usable channel."""
        return self._fit is not None

    def fit(self, clips: Iterable[Clip]) -> SensorPCA:
        """Standardise, eigendecompose the correlation of complete rows, set the limits."""
        data = _collect(self.layout, clips)
        cols, _, _ = _usable(data)
        self._fit = None
        if cols.size == 0:
            return self
        rows = data[:, cols]
        rows = rows[np.isfinite(rows).all(axis=1)]
        cols2, mean, std = _usable(rows)
        if cols2.size == 0:
            return self
        cols, rows = cols[cols2], rows[:, cols2]
        z = (rows - mean) / std
        eigvals, vecs = np.linalg.eigh(np.cov(z, rowvar=False).reshape(cols.size, cols.size))
        order = np.argsort(eigvals)[::-1]
        eigvals, vecs = np.maximum(eigvals[order], 0.0), vecs[:, order]
        frac = np.cumsum(eigvals) / eigvals.sum()
        k = int(np.searchsorted(frac, self.variance - 1e-12) + 1)
        self._fit = _PcaFit(
            cols=cols,
            mean=mean,
            std=std,
            loadings=vecs[:, :k],
            eigvals=np.maximum(eigvals[:k], 1e-12),
            t2_limit=t2_limit(rows.shape[0], k, self.conf),
            q_limit=q_limit(eigvals[k:], self.conf),
        )
        return self

    def statistics(
        self, sensors: np.ndarray | None, steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T2, Q) per step; NaN where any used channel is not measured."""
        x = self.layout.prepare(sensors, steps)
        if self._fit is None or x.shape[1] == 0:
            return np.full(x.shape[0], np.nan), np.full(x.shape[0], np.nan)
        f = self._fit
        z = (x[:, f.cols] - f.mean) / f.std
        proj = z @ f.loadings
        t2 = np.sum(proj**2 / f.eigvals, axis=1)
        q = np.sum((z - proj @ f.loadings.T) ** 2, axis=1)
        return t2, q

    def score(self, frames: np.ndarray | None, sensors: np.ndarray | None) -> np.ndarray:
        """max(T2 / T2_limit, Q / Q_limit) per step (T2 alone when no residual space)."""
        t2, q = self.statistics(sensors, None if frames is None else len(frames))
        if self._fit is None:
            return t2
        out = t2 / self._fit.t2_limit
        if self._fit.q_limit is not None:
            out = np.maximum(out, q / self._fit.q_limit)
        return out


def make_baselines(channels: tuple[str, ...] = SENSOR_CHANNELS) -> dict[str, Scorer]:
    """The benchmark's baselines, unfitted, keyed by name."""
    scorers: list[Scorer] = [FrameDiff(), SensorSigma(channels), SensorPCA(channels)]
    return {s.name: s for s in scorers}
