"""The monitor's per-frame pipeline: predict, score, check health, step the alarm engine.

One ``Pipeline.step(frame, sensors, now)`` per model step is exactly what the live monitor and
``foresight replay`` run. Its parts, in order:

1. ``FeatureStream``: the world model observes the frame and sensors, the forecasts made one horizon
   ago are scored against it (raw residual features) and new forecasts are made, in one jitted call;
2. ``ResidualTracker``: calibrated, smoothed score, heatmap and per-sensor residuals;
3. ``HealthMonitor``: frozen frames, missing sensors, an unscorable model or a global change of the
   image (lighting, camera moved) make a health fault, which never commands a slow-down;
4. line state: from the caller (PLC tags) or, when not given, from the sensor stream's belt speed,
   or else from the image's motion; a commanded speed change (``SpeedChangeGate``) withholds the
   score for one horizon, as an occlusion does (``OcclusionGate``); the engine also sees the
   model's warm-up as "not running", so a cold start settles like a restart;
5. ``alarms.step``: the pure alarm state machine, whose commands the caller sends to the PLC.

A sample that is not scored as normal (any state but ``normal``) teaches no baseline: neither the
model's background nor the residual trend.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from foresight.alarms import engine as alarms
from foresight.alarms.config import AlarmConfig
from foresight.errors import InputError
from foresight.model.checkpoint import ModelBundle
from foresight.model.core import Forecast
from foresight.model.predictor import Predictor
from foresight.residuals.config import ResidualConfig
from foresight.residuals.tracker import Calibration, Residual, ResidualTracker

RUNNING_FRACTION = 0.3  # the line runs while its belt (or motion) is above this share of normal
FROZEN_DIFF = 0.05  # mean absolute grey-level change below which two frames count as identical


#: health faults that say the picture no longer fits the model (not that camera or sensors fail)
MISFIT = ("global_change", "obstructed")
OCCLUSION_HOLD_S = 0.5  #: the score stays withheld this long after an occlusion has gone
OCCLUSION_HEALTH_S = 10.0  #: occluded this long without a break: health fault "obstructed"
COMMAND_REL_CHANGE = 1e-3  #: a command channel moving by more than this share counts as a change


class FeatureStream:
    """The world model over one stream: carry, forecasts awaiting their due time, raw features."""

    def __init__(self, predictor: Predictor, cfg: ResidualConfig):
        self.pred, self.cfg = predictor, cfg
        if predictor.image_size % cfg.block:
            raise InputError(
                f"residuals.block ({cfg.block}) must divide the model's image size "
                f"({predictor.image_size})"
            )
        self.steps = predictor.steps
        self.reset()

    def reset(self) -> None:
        """Start a new stream: empty carry and no pending forecasts."""
        # Committed to the device like the step's outputs, so the step compiles once, not twice.
        self.carry = jax.device_put(self.pred.init_carry(1), jax.devices()[0])
        self.history: deque[Forecast] = deque(maxlen=max(self.steps) + 1)
        self.n = 0
        self._dummy: list[Forecast] | None = None

    def step(self, frame: np.ndarray, raw: np.ndarray, learn: bool) -> dict[str, np.ndarray]:
        """Observe one frame (H, W, 3) uint8 and raw sensors (S,); raw features, NaN if not due."""
        due, valid = [], np.zeros(len(self.steps), bool)
        for i, k in enumerate(self.steps):
            if len(self.history) >= k:
                due.append(self.history[-k])
                valid[i] = True
            else:
                due.append(self._dummy_forecast(i))
        learn_arr = np.full((1,), 1.0 if learn else 0.0, np.float32)
        self.carry, fc, feats = self.pred.step_scored(
            self.carry,
            frame[None],
            raw[None].astype(np.float32),
            tuple(due),
            learn_arr,
            self.cfg.block,
            self.cfg.pixel_metric,
        )
        self.history.append(fc)
        self.n += 1
        out = {k: np.array(v[0], np.float32) for k, v in feats._asdict().items()}
        for k in out:
            out[k][~valid] = np.nan
        return out

    def _dummy_forecast(self, i: int) -> Forecast:
        """A placeholder for a horizon not yet due, committed to the device like the jitted
        step's outputs (an uncommitted placeholder recompiles the step as horizons fill in)."""
        if self._dummy is None:
            steps, size, s = len(self.steps), self.pred.image_size, self.pred.n_sensors
            z = max(self.pred.bundle.model_cfg.stoch, 1)

            def make() -> Forecast:
                return jax.device_put(
                    Forecast(
                        frame=np.zeros((1, steps, size, size, 3), np.float32),
                        frame_logvar=np.zeros((1, steps, size, size, 1), np.float32),
                        sensors=np.zeros((1, steps, s), np.float32),
                        sensors_std=np.ones((1, steps, s), np.float32),
                        z_mu=np.zeros((1, steps, z), np.float32),
                        z_std=np.ones((1, steps, z), np.float32),
                    ),
                    self.carry.h.sharding,  # committed like the step's own outputs
                )

            self._dummy = [make() for _ in self.steps]
        return self._dummy[i]


@dataclass
class HealthMonitor:
    """Model-health checks; ``update`` returns the reason of a fault, or None when healthy."""

    cfg: ResidualConfig
    fps: float
    channels: tuple[str, ...]
    frozen_seconds: float = 0.2  # two identical model frames: faster than the on-delay
    nan_seconds: float = 2.0
    global_seconds: float = 1.0
    _frozen: int = 0
    _seen: np.ndarray | None = None
    _nan: np.ndarray | None = None
    _global: int = 0

    def update(self, motion: float | None, raw: np.ndarray, global_fraction: float) -> str | None:
        """Advance the checks by one step; ``motion`` is None when no frame came."""
        if motion is None:
            return "no_frame"
        self._frozen = self._frozen + 1 if motion < FROZEN_DIFF else 0
        finite = np.isfinite(raw)
        if self._seen is None:
            self._seen, self._nan = finite.copy(), np.zeros(len(raw), int)
        self._seen |= finite
        self._nan = np.where(finite, 0, self._nan + 1)
        self._global = self._global + 1 if global_fraction > self.cfg.global_fraction else 0
        if self._frozen >= self.frozen_seconds * self.fps:
            return "frozen_frames"
        lost = self._seen & (self._nan >= self.nan_seconds * self.fps)
        if lost.any():
            names = [c for c, x in zip(self.channels, lost, strict=False) if x]
            return "sensor_lost:" + ",".join(names)
        if self._global >= self.global_seconds * self.fps:
            return "global_change"
        return None


class OcclusionGate:
    """Something between camera and line (a hand, a shadow passing) makes many regions diverge
    at once; a carton fault makes few. While more than ``residuals.occlusion_fraction`` of the
    regions diverge, and for ``hold_s`` after, the score is withheld from the alarm engine (the
    state holds; no health fault: an occlusion is normal plant life, not a broken monitor).

    ``hold_s`` covers the longest forecast horizon: a forecast made while the hand was in view
    comes due up to that long after it has gone, and it echoes the hand (measured on a
    simulated line: a hand gone at 37 s still scored 13 on the 2 and 3 s horizons until 40 s,
    with a 0.5 s hold)."""

    def __init__(self, cfg: ResidualConfig, horizon_s: float = 0.0):
        self.fraction = cfg.occlusion_fraction
        self.hold_s = max(OCCLUSION_HOLD_S, horizon_s) + 3.0 * cfg.smooth_seconds
        self.until = -math.inf
        self.seen_until = -math.inf  # the divergence itself (without the echo hold)
        self.since: float | None = None  # start of the current occlusion

    def update(self, now: float, fraction: float) -> bool:
        """True while the picture counts as occluded at ``now``."""
        if fraction > self.fraction:
            self.until = now + self.hold_s
            self.seen_until = now + OCCLUSION_HOLD_S
        occluded = now < self.until
        seen = now < self.seen_until
        self.since = (self.since if self.since is not None else now) if seen else None
        return occluded

    def stuck(self, now: float) -> bool:
        """Occluded for longer than a hand or a shadow takes: the view is blocked, or the model
        no longer matches the picture. Either way the monitor is blind: a health matter."""
        return self.since is not None and now - self.since > OCCLUSION_HEALTH_S


class SpeedChangeGate:
    """A commanded speed change (the operator's planned change, a restart's ramp, a slow-down or
    its recovery) makes every forecast made before it stale: it assumed the old speed. From the
    change until the longest horizon after it (plus the smoothing's decay), the score is withheld
    from the alarm engine, as during an occlusion. Measured on the benchmark line's calibration
    footage before this gate: planned speed changes of 4-6 % made the two highest normal score
    peaks (13.0 and 9.3) in 1.4 h, and set the false-alarm threshold."""

    def __init__(self, cfg: ResidualConfig, channels: tuple[str, ...], horizon_s: float):
        self.idx = [channels.index(c) for c in cfg.command_channels if c in channels]
        self.hold_s = horizon_s + 3.0 * cfg.smooth_seconds
        self.prev: np.ndarray | None = None
        self.until = -math.inf

    def update(self, now: float, raw: np.ndarray) -> bool:
        """True while a commanded speed change is recent at ``now`` (raw sensors ``raw``)."""
        if self.idx:
            cur = np.asarray(raw, np.float64)[self.idx]
            if self.prev is not None:
                both = np.isfinite(cur) & np.isfinite(self.prev)
                size = np.maximum(np.maximum(np.abs(cur), np.abs(self.prev)), 1e-9)
                if np.any(both & (np.abs(cur - self.prev) > COMMAND_REL_CHANGE * size)):
                    self.until = now + self.hold_s
            self.prev = cur
        return now < self.until


@dataclass(frozen=True)
class StepOutput:
    """Everything one pipeline step produced, for the PLC, the store and the replay log."""

    t: float
    score: float
    instant: float
    horizons: np.ndarray
    state: str
    alarm: bool
    speed_limit: float
    commands: tuple[alarms.Command, ...]
    health: str | None
    running: bool
    suspended: bool
    occluded: bool = False
    speed_change: bool = False
    residual: Residual | None = field(repr=False, default=None)

    @property
    def calm(self) -> bool:
        """The line runs, no slow-down is up, and camera and sensors work: a step of the line's
        ordinary operation as it looks now. The drift detector and the footage archive take
        these. Kept in: ``watch``, occlusions (hands and shadows are normal plant life) and the
        health faults that only say the model no longer fits the picture (``MISFIT``): a
        drifted line (new product, new light) scores higher, sits in watch, trips the occlusion
        gate, and its footage is exactly what drift detection and a retrain need. Left out:
        slow-down and recovery (possible precursors), a stopped line, camera or sensor faults."""
        fits = self.health is None or self.health in MISFIT
        return self.running and self.state not in ("slowdown", "recovering") and fits

    def record(self, horizons: tuple[float, ...]) -> dict[str, Any]:
        """A JSON-friendly summary (the replay line, the store row)."""

        def num(x: float) -> float | None:
            return round(float(x), 4) if math.isfinite(x) else None

        return {
            "t": round(self.t, 4),
            "score": num(self.score),
            "state": self.state,
            "alarm": self.alarm,
            "speed_limit_pct": round(self.speed_limit, 2),
            "health": self.health,
            "running": self.running,
            "suspended": self.suspended,
            "occluded": self.occluded,
            "speed_change": self.speed_change,
            "horizons": {f"{h:g}s": num(v) for h, v in zip(horizons, self.horizons, strict=False)},
        }


@dataclass(frozen=True)
class LineRefs:
    """What 'running' looks like on this line, learnt with the calibration."""

    belt_speed: float = math.nan  # median belt speed while running
    motion: float = math.nan  # median mean absolute frame difference (grey levels)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for the checkpoint's ``extra``."""
        return {
            "line.belt_speed": np.asarray(self.belt_speed),
            "line.motion": np.asarray(self.motion),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> LineRefs:
        """Inverse of ``to_arrays`` (NaN when absent)."""
        get = lambda k: float(np.asarray(arrays.get(k, math.nan)))  # noqa: E731
        return cls(belt_speed=get("line.belt_speed"), motion=get("line.motion"))

    def running(self, belt_speed: float, motion: float) -> bool:
        """The line runs: from the belt speed when known, else from image motion, else yes."""
        if math.isfinite(belt_speed) and math.isfinite(self.belt_speed):
            return belt_speed > RUNNING_FRACTION * self.belt_speed
        if math.isfinite(motion) and math.isfinite(self.motion):
            return motion > RUNNING_FRACTION * self.motion
        return True


def grey_of(frame: np.ndarray) -> np.ndarray:
    """Grey levels (H, W) float32 of an RGB frame."""
    return frame.astype(np.float32).mean(-1)


def calibration_of(bundle: ModelBundle) -> tuple[Calibration, alarms.Thresholds, LineRefs]:
    """The residual statistics, alarm thresholds and line references shipped with a model."""
    cal = Calibration.from_arrays(bundle.extra)
    thr = bundle.card.get("calibration", {}).get("thresholds")
    if cal is None or thr is None:
        where = bundle.card.get("path", "the model")
        raise InputError(
            f"{where}: not calibrated (no residual statistics or alarm thresholds); "
            "train it with `foresight train`, which calibrates on held-out normal footage"
        )
    return cal, alarms.Thresholds.from_dict(thr), LineRefs.from_arrays(bundle.extra)


def configs_of(bundle: ModelBundle) -> tuple[ResidualConfig, AlarmConfig]:
    """The residual and alarm settings the model was calibrated with."""
    cal = bundle.card.get("calibration", {})
    residuals = dict(cal.get("residuals", {}))
    # Calibrated before the occlusion gate existed: thresholds assume no gate, so none is added.
    residuals.setdefault("occlusion_fraction", 1.0)
    # Calibrated before the frame's rim was left out: every region is scored.
    residuals.setdefault("border_fraction", 0.0)
    return ResidualConfig(**residuals), AlarmConfig(**cal.get("alarms", {}))


class Pipeline:
    """Predict, score, check health and step the alarm engine, one model step at a time."""

    def __init__(self, bundle: ModelBundle, predictor: Predictor | None = None):
        self.bundle = bundle
        self.rcfg, self.acfg = configs_of(bundle)
        self.cal, self.thr, self.refs = calibration_of(bundle)
        self.pred = predictor or Predictor(bundle)
        self.fps = float(bundle.data["fps"])
        self.channels = tuple(bundle.data.get("channels", ()))
        self.horizons = tuple(sorted(bundle.model_cfg.horizons))
        self.features = FeatureStream(self.pred, self.rcfg)
        self.reset()

    def reset(self) -> None:
        """A new stream: fresh model state, tracker, health checks and alarm engine."""
        self.features.reset()
        self.tracker = ResidualTracker(self.rcfg, self.cal, self.fps)
        self.health = HealthMonitor(self.rcfg, self.fps, self.channels)
        self.state = alarms.initial_state()
        self._grey: np.ndarray | None = None
        self.occlusion = OcclusionGate(self.rcfg, max(self.horizons))
        self.speed_gate = SpeedChangeGate(self.rcfg, self.channels, max(self.horizons))
        self._warm = max(self.features.steps) + round(self.rcfg.warmup_seconds * self.fps)
        #: until this time the model's background baseline learns whatever the engine's state
        #: (set by a model swap, ``foresight.monitor.swap``)
        self.relearn_until = -math.inf

    def belt_speed(self, raw: np.ndarray) -> float:
        """The belt-speed channel of raw sensors (NaN when the stream has none)."""
        if "belt_speed" not in self.channels:
            return math.nan
        return float(raw[self.channels.index("belt_speed")])

    def expected(self, horizon_s: float = 1.0) -> tuple[np.ndarray, float] | None:
        """What the model expected to see at the latest step, forecast about ``horizon_s``
        earlier (the nearest horizon): (frame (H, W, 3) float in [0, 1], horizon in seconds), or
        None until such a forecast is due. Call it from the thread that steps the pipeline."""
        steps, hist = self.features.steps, self.features.history
        i = min(range(len(steps)), key=lambda j: abs(steps[j] / self.fps - horizon_s))
        if len(hist) < steps[i] + 1:  # hist[-1] is this step's own forecast
            return None
        frame = np.asarray(hist[-1 - steps[i]].frame[0, i], np.float32)
        return np.clip(frame, 0.0, 1.0), steps[i] / self.fps

    def step(
        self, frame: np.ndarray, raw: np.ndarray, now: float, running: bool | None = None
    ) -> StepOutput:
        """One model step: frame (H, W, 3) uint8, raw sensors (S,), time in seconds."""
        grey = grey_of(frame)
        motion = math.nan if self._grey is None else float(np.abs(grey - self._grey).mean())
        self._grey = grey
        if running is None:
            running = self.refs.running(self.belt_speed(raw), motion)
        learn = self.state.mode == "normal"
        feats = self.features.step(frame, raw, learn or now < self.relearn_until)
        scorable = self.features.n > self._warm
        res = self.tracker.update(feats, learn=learn and running) if scorable else None
        score = res.score if res is not None else math.nan
        occluded = res is not None and self.occlusion.update(now, res.global_fraction)
        changing = self.speed_gate.update(now, raw)
        reason = self.health.update(
            motion if math.isfinite(motion) else math.inf, raw, res.global_fraction if res else 0.0
        )
        if reason is None and scorable and not math.isfinite(res.instant if res else math.nan):
            reason = "no_score"
        if reason is None and self.occlusion.stuck(now):
            reason = "obstructed"
        # A cold start (the model warming up) is a restart for the engine: once scores come,
        # they count only after they have settled, as after a line stop.
        tick = alarms.Tick(
            now=now,
            score=math.nan if occluded or changing else score,
            healthy=reason is None,
            running=running and scorable,
        )
        self.state, cmds = alarms.step(self.acfg, self.thr, self.state, tick)
        return StepOutput(
            t=now,
            score=score,
            instant=res.instant if res else math.nan,
            horizons=res.horizons if res else np.full(len(self.horizons), np.nan),
            state=self.state.mode,
            alarm=self.state.alarm,
            speed_limit=float(self.state.limit),
            commands=cmds,
            health=reason,
            running=bool(running),
            suspended=now < self.state.suspended_until,
            occluded=occluded,
            speed_change=changing,
            residual=res,
        )
