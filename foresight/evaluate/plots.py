"""Benchmark figures: one fault's score trace (with frame and heatmap) and the lead-time histogram.

Figures are built on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no
display, no global state) and written atomically: a temporary file in the target folder, then
``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from foresight.errors import InputError

_THRESHOLD_STYLE = {"alarm": "tab:red", "clear": "tab:green", "watch": "tab:orange"}


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file in the same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _score_panel(
    ax: Any,
    t: np.ndarray,
    score: np.ndarray,
    thresholds: Mapping[str, float],
    fault: Mapping[str, Any] | None,
    alarm: np.ndarray | None,
) -> None:
    ax.plot(t, score, color="black", lw=1.0, label="score")
    for key, colour in _THRESHOLD_STYLE.items():
        value = thresholds.get(key)
        if value is not None and np.isfinite(value):
            ax.axhline(value, color=colour, ls="--", lw=1.0, label=f"{key} {value:.3g}")
    if fault:
        start, jam = float(fault["precursor_start"]), float(fault["jam_onset"])
        kind = fault.get("type", "fault")
        ax.axvspan(start, jam, color="gold", alpha=0.3, label=f"precursor ({kind})")
        ax.axvline(jam, color="tab:red", lw=1.5, label="jam onset")
    if alarm is not None and np.any(alarm):
        ax.fill_between(
            t,
            0,
            0.06,
            where=alarm,
            step="post",
            color="tab:purple",
            alpha=0.8,
            transform=ax.get_xaxis_transform(),
            label="slow-down",
        )
    ax.set_xlabel("time in file (s)")
    ax.set_ylabel("anomaly score")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)


def _image_panel(ax: Any, frame: np.ndarray | None, heatmap: np.ndarray | None) -> None:
    if frame is not None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"plot_fault: frame must be (H, W, 3), got {frame.shape}")
        ax.imshow(frame)
        height, width = frame.shape[:2]
    if heatmap is not None:
        heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
        if heat.ndim != 2:
            raise InputError(f"plot_fault: heatmap must be (h, w), got {heat.shape}")
        if frame is not None:
            heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
        im = ax.imshow(heat, cmap="inferno", alpha=0.5 if frame is not None else 1.0)
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_axis_off()
    ax.set_title("frame + error heatmap" if heatmap is not None else "frame", fontsize=9)


def plot_fault(
    path: str | os.PathLike[str],
    t: np.ndarray,
    score: np.ndarray,
    thresholds: Mapping[str, float] | None = None,
    fault: Mapping[str, Any] | None = None,
    alarm: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    frame: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """PNG of the score over time with thresholds, precursor window, jam onset and alarms."""
    t = np.asarray(t, dtype=float).ravel()
    score = np.asarray(score, dtype=float).ravel()
    if t.shape != score.shape:
        raise InputError(f"plot_fault: t has {t.size} steps but score has {score.size}")
    if alarm is not None:
        alarm = np.asarray(alarm, dtype=bool).ravel()
        if alarm.shape != t.shape:
            raise InputError(f"plot_fault: alarm has {alarm.size} steps, t has {t.size}")
    side = heatmap is not None or frame is not None
    fig = Figure(figsize=(12 if side else 9, 4), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[2.2, 1]) if side else [fig.subplots()]
    _score_panel(axes[0], t, score, thresholds or {}, fault, alarm)
    if side:
        _image_panel(axes[1], frame, heatmap)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_lead_histogram(
    path: str | os.PathLike[str], leads_by_type: Mapping[str, Sequence[float]], bin_s: float = 0.25
) -> Path:
    """PNG histogram of lead times (s) stacked by fault type; types without leads stay listed."""
    if bin_s <= 0:
        raise InputError(f"plot_lead_histogram: bin_s must be > 0, got {bin_s}")
    names = list(leads_by_type)
    data = [np.asarray(leads_by_type[k], dtype=float).ravel() for k in names]
    top = max([float(d.max()) for d in data if d.size] + [1.0])
    bins = np.arange(0.0, top + bin_s, bin_s)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    if names:
        labels = [f"{k} (n={d.size})" for k, d in zip(names, data, strict=True)]
        ax.hist(data, bins=bins, stacked=True, label=labels)
        ax.legend(fontsize=8)
    ax.axvline(1.0, color="black", ls="--", lw=1.0)
    ax.set_xlabel("lead before jam onset (s)")
    ax.set_ylabel("detected faults")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
