"""NAB v1.1 scoring, reimplemented from its protocol (numenta/NAB ``nab/sweeper.py``).

Every row gets a weight as if it were detected (``row_weights``): inside a window of ``W`` rows
ending at row ``R``, ``scaledSigmoid(-(R - i + 1) / W) / scaledSigmoid(-1) * tp``; outside, before
any window, ``-fp``; after a window (right edge ``R``, width ``Wp``),
``scaledSigmoid(|R - i| / (Wp - 1)) * fp``. Rows of the probationary period (the first
``min(floor(0.15 n), 750)``) are not scored. A file's score for a set of detected rows is the sum
of the weights of detected rows outside windows plus, per window, the best (earliest) detected
weight in it, or ``-fn`` when none. ``sweep`` finds the one threshold for a whole corpus that
maximises the corpus total, as NAB's optimiser does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: (tp, fn, fp) weights per profile, as in NAB's config/profiles.json
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}
OUTSIDE, PROBATION = -1, -2


def scaled_sigmoid(y: float) -> float:
    """-1 beyond 3, else 2 / (1 + exp(5 y)) - 1."""
    return -1.0 if y >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation(n: int, percent: float = 0.15) -> int:
    """Rows not scored at the start of a file of ``n`` rows."""
    return int(min(math.floor(percent * n), percent * 5000))


@dataclass(frozen=True)
class RowWeights:
    """Per row: the weight if detected, and the window it lies in (OUTSIDE, PROBATION, or id)."""

    weight: np.ndarray
    window: np.ndarray
    n_windows: int  # windows with at least one scored row
    fn: float


def row_weights(n: int, wins: Sequence[tuple[int, int]], profile: str) -> RowWeights:
    """Weights of ``n`` rows with windows given as inclusive (left, right) row indices."""
    tp, fn, fp = PROFILES[profile]
    max_tp = scaled_sigmoid(-1.0)
    weight = np.empty(n)
    window = np.full(n, OUTSIDE)
    prev_right = prev_width = None
    k = 0
    for i in range(n):
        if k < len(wins) and wins[k][0] <= i <= wins[k][1]:
            left, right = wins[k]
            width = right - left + 1
            weight[i] = scaled_sigmoid(-(right - i + 1) / width) * tp / max_tp
            window[i] = k
            if i == right:
                prev_right, prev_width, k = right, width, k + 1
        else:
            pos = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
            weight[i] = scaled_sigmoid(pos) * fp
    window[: probation(n)] = PROBATION
    scored = np.unique(window[window >= 0]).size
    return RowWeights(weight, window, scored, fn)


def file_score(rw: RowWeights, detected: np.ndarray) -> float:
    """Raw NAB score of one file for boolean detections per row."""
    det = np.asarray(detected, bool)
    total = float(rw.weight[det & (rw.window == OUTSIDE)].sum())
    for w in np.unique(rw.window[rw.window >= 0]):
        hit = det & (rw.window == w)
        total += float(rw.weight[hit].max()) if hit.any() else -rw.fn
    return total


def normalised(raw: float, n_windows: int, profile: str) -> float:
    """100 * (S - S_null) / (S_perfect - S_null) for a file or corpus with ``n_windows``."""
    tp, fn, _ = PROFILES[profile]
    null, perfect = -fn * n_windows, tp * n_windows
    return 100.0 * (raw - null) / (perfect - null) if n_windows else math.nan


def score_curve(rw: RowWeights, scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Raw file score at each threshold in ``levels`` (a row is detected when score >= level)."""
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    out = np.zeros(levels.size)
    fp_rows = rw.window == OUTSIDE
    fs = np.sort(s[fp_rows])[::-1]
    fw = np.cumsum(rw.weight[fp_rows][np.argsort(s[fp_rows])[::-1]])
    cnt = fs.size - np.searchsorted(fs[::-1], levels, side="left")
    out += np.where(cnt > 0, fw[np.maximum(cnt - 1, 0)] if fw.size else 0.0, 0.0)
    for w in np.unique(rw.window[rw.window >= 0]):
        rows = rw.window == w
        order = np.argsort(s[rows])[::-1]
        ws = s[rows][order]
        best = np.maximum.accumulate(rw.weight[rows][order])
        cnt = ws.size - np.searchsorted(ws[::-1], levels, side="left")
        out += np.where(cnt > 0, best[np.maximum(cnt - 1, 0)], -rw.fn)
    return out


def sweep(files: Sequence[tuple[RowWeights, np.ndarray]]) -> tuple[float, float]:
    """The corpus-wide threshold maximising the summed raw score, and that total."""
    finite = [np.asarray(s, np.float64) for _, s in files]
    levels = np.unique(np.concatenate([v[np.isfinite(v)] for v in finite] + [np.array([np.inf])]))
    total = sum(score_curve(rw, s, levels) for rw, s in files)
    best = int(np.argmax(total[::-1]))  # ties: the highest threshold, as NAB sweeps downwards
    i = levels.size - 1 - best
    return float(levels[i]), float(total[i])
