"""Figures for the dashboard (matplotlib ``Figure`` objects, no pyplot state: thread-safe)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from foresight.alarms.engine import Thresholds
from foresight.store import Series

_LEVELS = (("alarm", "#d62728", "--"), ("clear", "#2ca02c", ":"), ("watch", "#ff7f0e", ":"))


def _dates(t_ns: np.ndarray) -> list[_dt.datetime]:
    return [_dt.datetime.fromtimestamp(t / 1e9).astimezone() for t in np.asarray(t_ns)]


def trend_figure(
    series: Mapping[str, Series],
    thresholds: Thresholds | None = None,
    alarms: Sequence[tuple[int, int]] = (),
    title: str = "",
    xlim: tuple[int, int] | None = None,
) -> Figure:
    """Score (mean with its min-max band) against the alarm levels, alarms shaded; below it
    the residual per horizon. ``xlim`` (ns) fixes the time axis, e.g. to end at now."""
    horizons = [k for k in series if k != "score"]
    fig = Figure(figsize=(10, 5.2 if horizons else 3.2), layout="constrained")
    axes = fig.subplots(2 if horizons else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    s = series.get("score")
    if s is not None and len(s.time_ns):
        x = _dates(s.time_ns)
        ax.fill_between(x, s.min, s.max, color="#1f77b4", alpha=0.2, lw=0, label="min-max")
        ax.plot(x, s.mean, color="#1f77b4", lw=1.4, label="anomaly score")
    if thresholds is not None:
        for name, colour, style in _LEVELS:
            v = getattr(thresholds, name)
            ax.axhline(v, color=colour, ls=style, lw=1.2, label=f"{name} {v:.2f}")
    for start, end in alarms:
        ax.axvspan(*_dates(np.array([start, max(end, start + 1)])), color="#d62728", alpha=0.15)
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncols=5, frameon=False)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    if horizons:
        cmap = colormaps["viridis"]
        for i, k in enumerate(horizons):
            h = series[k]
            colour = cmap(i / max(1, len(horizons) - 1) * 0.85)
            ax2 = axes[1]
            ax2.plot(_dates(h.time_ns), h.mean, lw=1.1, color=colour, label=k[1:])
        axes[1].set_ylabel("residual per horizon")
        axes[1].grid(alpha=0.3)
        axes[1].legend(loc="upper left", fontsize=8, ncols=len(horizons), frameon=False)
    if xlim is not None:
        axes[-1].set_xlim(*_dates(np.asarray(xlim)))
    loc = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(loc)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(loc))
    return fig


def heat_overlay(frame: np.ndarray, heatmap: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """The frame (RGB uint8) with the residual heatmap (regions, in sigmas) blended on top."""
    h, w = frame.shape[:2]
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
    top = vmax if vmax is not None else max(float(np.percentile(heat, 99)), 3.0)
    norm = np.clip(heat / top, 0.0, 1.0)
    ys = np.minimum(np.arange(h) * heat.shape[0] // h, heat.shape[0] - 1)
    xs = np.minimum(np.arange(w) * heat.shape[1] // w, heat.shape[1] - 1)
    big = norm[np.ix_(ys, xs)]
    rgb = colormaps["inferno"](big)[..., :3] * 255.0
    alpha = (0.25 + 0.6 * big)[..., None]
    out = frame.astype(np.float32) * (1 - alpha) + rgb * alpha
    return out.clip(0, 255).astype(np.uint8)


def enlarge(img: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement so tiny model frames are visible without blur."""
    k = max(1, -(-min_side // min(img.shape[:2])))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)
