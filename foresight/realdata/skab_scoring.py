"""SKAB's scoring, reimplemented from its protocol (waico/SKAB ``core/metrics.py``, tsad).

- Outlier problem: point-wise confusion counts summed over every file's scored part;
  ``F1 = TP / (TP + (FN + FP) / 2)``, ``FAR = FP / (FP + TN) * 100``,
  ``MAR = FN / (FN + TP) * 100``.
- Changepoint problem: predicted changepoints are the edges of predicted segments
  (``abs(diff(prediction))``, first element ``prediction[0]``). Each true changepoint ``t`` opens
  the window ``[t, t + 60 s]``; where a window reaches the next one's start, the next window starts
  at this one's end (tsad's default "cut right window"). A window with no prediction scores
  ``A_fn``; else its first prediction scores ``A_tp`` at the window start falling along a tanh to
  ``A_fp`` at the end (tsad's "improved" scale, sampled on 1,000 points). Every prediction before,
  between or after the windows scores ``A_fp``. Per profile the totals over all files are
  normalised: ``100 * (S - S_null) / (S_perfect - S_null)``, ``S_null = n_windows * A_fn``,
  ``S_perfect = n_windows * A_tp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: (A_tp, A_fp, A_fn) per profile
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, -0.11, -1.0),
    "lowfp": (1.0, -0.22, -1.0),
    "lowfn": (1.0, -0.11, -2.0),
}
WINDOW = np.timedelta64(60, "s")
DETAIL = 1000


@dataclass(frozen=True)
class ScoredFile:
    """One file's scored part: times, true labels and the detector's 0/1 prediction."""

    times: np.ndarray  # datetime64, increasing
    anomaly: np.ndarray  # 0/1 per row
    changepoint: np.ndarray  # 0/1 per row
    prediction: np.ndarray  # 0/1 per row


def outlier_scores(files: Sequence[ScoredFile]) -> dict[str, float]:
    """F1, FAR % and MAR % of point-wise predictions, counts summed over files."""
    tp = tn = fp = fn = 0
    for f in files:
        t, p = np.asarray(f.anomaly) == 1, np.asarray(f.prediction) == 1
        tp += int(np.sum(t & p))
        tn += int(np.sum(~t & ~p))
        fp += int(np.sum(~t & p))
        fn += int(np.sum(t & ~p))
    f1 = tp / (tp + (fn + fp) / 2) if tp + fn + fp else 0.0
    far = 100.0 * fp / (fp + tn) if fp + tn else 0.0
    mar = 100.0 * fn / (fn + tp) if fn + tp else 0.0
    return {"f1": f1, "far": far, "mar": mar, "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def predicted_changepoints(prediction: np.ndarray) -> np.ndarray:
    """0/1 edges of the predicted segments; the first element is ``prediction[0]``."""
    p = np.asarray(prediction, dtype=np.int64)
    if p.size == 0:
        return p
    return np.concatenate([[p[0]], np.abs(np.diff(p))])


def windows(times: np.ndarray, changepoint: np.ndarray) -> list[tuple[np.datetime64, ...]]:
    """Right windows ``[t, t + 60 s]`` of the true changepoints, overlaps cut on the right one."""
    out = [[t, t + WINDOW] for t in np.asarray(times)[np.asarray(changepoint) == 1]]
    for i in range(len(out) - 1):
        if out[i][1] >= out[i + 1][0]:
            out[i + 1][0] = out[i][1]
    return [tuple(w) for w in out]


def scale(position: float, a_tp: float, a_fp: float) -> float:
    """tsad's tanh scale at ``position`` in [0, 1] of the window (A_tp at 0, A_fp at 1)."""
    x = np.linspace(-np.pi / 2, np.pi / 2, DETAIL)
    event = min(int(position * DETAIL), DETAIL - 1)
    return float((a_tp - a_fp) / 2 * -np.tanh(x[event]) / np.tanh(np.pi / 2) + (a_tp + a_fp) / 2)


def _file_counts(f: ScoredFile) -> tuple[list[float | None], int, int]:
    """Per window the relative position of its first prediction (None: missed), FPs, windows."""
    times = np.asarray(f.times)
    pred_t = times[predicted_changepoints(f.prediction) == 1]
    wins = windows(times, f.changepoint)
    if not wins:
        return [], int(pred_t.size), 0
    fps = int(np.sum(pred_t < wins[0][0]))
    positions: list[float | None] = []
    for i, (lo, hi) in enumerate(wins):
        inside = pred_t[(pred_t >= lo) & (pred_t <= hi)]
        positions.append(None if inside.size == 0 else float((inside[0] - lo) / (hi - lo)))
        nxt = wins[i + 1][0] if i + 1 < len(wins) else None
        after = pred_t > hi if nxt is None else (pred_t > hi) & (pred_t < nxt)
        fps += int(np.sum(after))
    return positions, fps, len(wins)


def changepoint_scores(files: Sequence[ScoredFile]) -> dict[str, float]:
    """NAB-style scores (standard, low FP, low FN), missed changepoints and false positives."""
    counts = [_file_counts(f) for f in files]
    n_win = sum(c[2] for c in counts)
    fps = sum(c[1] for c in counts)
    positions = [p for c in counts for p in c[0]]
    out: dict[str, float] = {
        "missed": sum(p is None for p in positions),
        "fps": fps,
        "windows": n_win,
    }
    for name, (a_tp, a_fp, a_fn) in PROFILES.items():
        s = a_fp * fps + sum(a_fn if p is None else scale(p, a_tp, a_fp) for p in positions)
        null, perfect = n_win * a_fn, n_win * a_tp
        out[f"nab_{name}"] = 100.0 * (s - null) / (perfect - null) if n_win else 0.0
    return out
