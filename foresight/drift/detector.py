"""Latched drift detection on the residual trend, with river's Page-Hinkley or ADWIN.

Design:

- **What is fed.** One value per ``drift.sample_seconds`` of line time: the *median* instant score
  of the calm steps in that sample (``StepOutput.calm``: running, no slow-down up, camera and
  sensors working). Slow-down and recovery steps, stopped-line steps and camera or sensor faults
  are left out, and a sample with fewer than ``min_fill`` usable steps is skipped. A short alarm
  thus never reaches the detector, and a spike shorter than half a sample cannot move a median:
  only a sustained rise can. Watch steps, occlusions and the health faults that say the model no
  longer fits (``global_change``, ``obstructed``) are fed: a drifted line scores higher and trips
  them, and leaving them out starves the detector of the very drift it is there to see
  (measured on a tiny model: on footage of a product it had not seen, 87 % of steps were occluded
  or obstructed and 9 % normal).
- **Detector.** ``river.drift.PageHinkley`` in ``up`` mode (rises only; a model that gets
  *better* is no reason to act), or ``ADWIN`` with the rise checked afterwards. Both learn their
  reference from the stream itself, so the first ``min_samples`` samples are this line's baseline
  under this model.
- **Latched.** river's ``drift_detected`` resets itself on the next update; here a detection
  latches ``event`` until ``acknowledge`` (an operator decided, or a retrain or rollback swapped
  the model, whose scores are in other units) and the detector stops learning meanwhile.
- **What changed.** The same normal steps give per-sample medians of each image region's and
  each sensor's residual (stage-1 robust sigmas, worst horizon) and of each component. The
  reference is their mean over the first ``min_samples`` samples (about zero in calibration
  units when the line looks as it did at calibration); the recent level is the mean of the last
  third of that many samples. The tracker's own ``trend`` (an EWMA with a time constant of
  ``residuals.trend_hours``) carries the same information but lags a change by that time
  constant, so the detector keeps these shorter means itself. ``changes.explain`` turns the
  rises into a ``DriftEvent``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from river import drift as river_drift

from foresight.drift.changes import DriftEvent, explain
from foresight.drift.config import DriftConfig
from foresight.residuals.tracker import Residual, quiet


class DriftDetector:
    """Streaming: ``update(residual, usable, now)`` per model step, then read ``event``."""

    def __init__(self, cfg: DriftConfig, channels: tuple[str, ...] = ()):
        self.cfg, self.channels = cfg, tuple(channels)
        self.acknowledge()

    def acknowledge(self) -> None:
        """Clear the latch and start over: new reference, fresh river detector."""
        c = self.cfg
        if c.detector == "page_hinkley":
            self.river = river_drift.PageHinkley(
                min_instances=c.min_samples, delta=c.delta, threshold=c.threshold, mode="up"
            )
        else:
            self.river = river_drift.ADWIN(delta=c.adwin_delta)
        self.event: DriftEvent | None = None
        self.samples = 0
        self.values: list[float] = []
        self._recent: deque[dict[str, np.ndarray]] = deque(maxlen=max(3, c.min_samples // 3))
        self._ref: list[dict[str, np.ndarray]] = []
        self._bucket: list[Residual] = []
        self._steps = 0
        self._start = math.nan

    @property
    def drifted(self) -> bool:
        """True from a detection until ``acknowledge``."""
        return self.event is not None

    def update(self, residual: Residual | None, usable: bool, now: float) -> DriftEvent | None:
        """One model step at ``now`` (s); ``usable``: a calm step (``StepOutput.calm``). Returns
        the event on the step it is raised, else None."""
        if self.event is not None:
            return None
        if not math.isfinite(self._start):
            self._start = now
        self._steps += 1
        if usable and residual is not None and math.isfinite(residual.instant):
            self._bucket.append(residual)
        if now - self._start < self.cfg.sample_seconds:
            return None
        bucket, steps = self._bucket, self._steps
        self._bucket, self._steps, self._start = [], 0, now
        if len(bucket) < self.cfg.min_fill * steps:
            return None
        return self._sample(bucket, now)

    def _sample(self, bucket: list[Residual], now: float) -> DriftEvent | None:
        """Feed one sample's median to river; latch an event on a rise."""
        with quiet():
            sample = {
                "score": np.asarray(np.median([r.instant for r in bucket])),
                "parts": np.nanmedian(np.stack([r.parts for r in bucket]), axis=0),
                "regions": np.nanmedian(np.stack([r.heatmap.ravel() for r in bucket]), axis=0),
                "sensors": np.nanmedian(np.stack([r.sensors for r in bucket]), axis=0),
            }
        x = float(sample["score"])
        self.samples += 1
        self.values.append(x)
        if self.samples <= self.cfg.min_samples:
            self._ref.append(sample)
        self._recent.append(sample)
        self.river.update(x)
        if self.samples <= self.cfg.min_samples or not self.river.drift_detected:
            return None
        ref, recent = _mean(self._ref), _mean(list(self._recent))
        rise = float(recent["score"] - ref["score"])
        if rise <= self.cfg.delta:  # ADWIN also flags falls; Page-Hinkley only rises
            return None
        self.event = explain(self.cfg, ref, recent, self.channels, now, rise, self.samples)
        return self.event


def _mean(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Element-wise NaN-aware mean of per-sample dicts."""
    with quiet():
        return {k: np.nanmean(np.stack([s[k] for s in samples]), axis=0) for k in samples[0]}
