"""Hot swap of the monitor's model: load and check a candidate off the hot path, then take it
between two frames.

Design:

- ``prepare`` runs in a worker thread of its own (never the model thread): it loads the model
  directory, and refuses it with one ``InputError`` line unless it has the running model's
  architecture (the network's graph), horizons, frame size, rate and sensor channels, the same
  residual block and pixel metric (so the jitted step is reused, nothing compiles on the hot
  path), a calibration (residual statistics and alarm thresholds) and finite weights.
- ``apply`` runs in the model thread, between two ``Pipeline.step`` calls (that thread is
  serial), and only swaps references: the predictor's parameters (``Predictor.swap``), and the
  calibration, thresholds, line references and residual/alarm settings rebuilt from the new
  bundle. What belongs to the *stream* is kept: the recurrent carry and the forecasts awaiting
  their time, the frame-health checks and the alarm engine's state (a slow-down in progress stays
  in progress, under the new thresholds).
- Except that the carry's background baseline learns from every frame while the score is
  withheld. It learns only while the engine is normal, so through a long "obstructed" health
  fault (the picture changed broadly: a new carton supplier, new lighting) it stays at the old
  scene; the new model, retrained for the new scene, then compares the line with a picture of
  how it looked before, and the view stays "obstructed" (no learning) until a frame happens to
  clear the fault. Measured on the drift-to-swap test's footage with the background frozen at
  the old cartons: the swapped-in model was "obstructed" for 189 of its first 600 steps, 4 with
  this relearning. The same test failed twice (in CI and in a CI-like run) with the new model's
  median score at the drifted level (14.7, the old model 13.7 on the new cartons, 1.1 before
  them), which this would explain; it was not reproduced locally in 6 runs. A swap (or a
  reload of the same model) is also how an operator brings the background up to date after
  such a change.
- The residual tracker starts afresh (its smoothed score is in the old model's units), and the
  score is withheld from the alarm engine until the forecasts made by the old parameters have
  all come due (the longest horizon plus three smoothing time constants): the alarm state holds
  meanwhile, exactly as during an occlusion, so a swap can neither start nor end a slow-down.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from foresight.errors import InputError
from foresight.model.checkpoint import ModelBundle, load_model
from foresight.pipeline import (
    OcclusionGate,
    Pipeline,
    SpeedChangeGate,
    calibration_of,
    configs_of,
)
from foresight.residuals.tracker import ResidualTracker

log = logging.getLogger(__name__)


def model_version(bundle: ModelBundle, path: str | Path | None = None) -> str:
    """Version tag of a model: its creation time plus a short hash of its card.

    The card holds the calibration, so a recalibrated model (same ``created``) gets a new
    version too. Pass ``path`` to hash the card file as written; else the loaded card is hashed.
    """
    created = str(bundle.card.get("created", "model"))
    card = Path(path) / "model.json" if path is not None else None
    if card is not None and card.is_file():
        text = card.read_bytes()
    else:
        text = repr(sorted(bundle.card.items())).encode()
    return f"{created}#{hashlib.sha256(text).hexdigest()[:8]}"


@dataclass(frozen=True)
class Candidate:
    """A loaded, checked model ready to be swapped in."""

    path: Path
    bundle: ModelBundle
    version: str


def _same(what: str, have: object, want: object, where: Path) -> None:
    if have != want:
        raise InputError(
            f"{where}: cannot hot-swap: {what} is {have} there but {want} in the running model"
        )


def prepare(pipe: Pipeline, path: str | Path) -> Candidate:
    """Load ``path`` and check it can replace ``pipe``'s model; ``InputError`` (one line) if not."""
    where = Path(path)
    bundle = load_model(where)  # InputError for a missing or damaged directory
    bundle.card.setdefault("path", str(where))
    calibration_of(bundle)  # InputError: "not calibrated"
    try:
        rcfg, _ = configs_of(bundle)
    except ValueError as e:  # pydantic: a damaged calibration table in the card
        first = str(e).splitlines()[0]
        raise InputError(f"{where}: cannot hot-swap: bad calibration settings: {first}") from None
    old = pipe.bundle
    graphdef, params = nnx.split(bundle.model, nnx.Param)
    if graphdef != pipe.pred.graphdef:
        arch = {k: getattr(bundle.model_cfg, k) for k in ("conv", "embed", "deter", "stoch")}
        raise InputError(
            f"{where}: cannot hot-swap: a different architecture ({arch}); restart the monitor"
        )
    _same("horizons (frames)", bundle.steps, old.steps, where)
    for key in ("image_size", "fps", "channels"):
        _same(f"data.{key}", _plain(bundle.data.get(key)), _plain(old.data.get(key)), where)
    _same("residuals.block", rcfg.block, pipe.rcfg.block, where)
    _same("residuals.pixel_metric", rcfg.pixel_metric, pipe.rcfg.pixel_metric, where)
    leaves = [*jax.tree.leaves(params), bundle.norm.mean, bundle.norm.std]
    if not all(bool(np.isfinite(np.asarray(x)).all()) for x in leaves):
        raise InputError(f"{where}: cannot hot-swap: the weights hold NaN or infinite values")
    return Candidate(where, bundle, model_version(bundle, where))


def _plain(v: object) -> object:
    return list(v) if isinstance(v, (list, tuple)) else v


def take_request(path: Path) -> str | None:
    """Consume the request file ``path``: its stripped text ("" = reload), or None if absent.

    The file is renamed before it is read, so a request is taken once even if it is rewritten
    meanwhile; an unreadable one is logged and dropped.
    """
    if not path.is_file():
        return None
    taken = path.with_name(f".{path.name}.taken")
    try:
        os.replace(path, taken)
        text = taken.read_text().strip()
        taken.unlink()
    except OSError as e:
        log.warning("swap request %s unreadable: %s", path, e)
        return None
    return text


def apply(pipe: Pipeline, cand: Candidate, now: float) -> None:
    """Swap ``cand`` into ``pipe`` (call between two steps, from the model thread).

    ``now`` is the time of the last step; the score is withheld until the old forecasts are due.
    """
    bundle = cand.bundle
    rcfg, acfg = configs_of(bundle)
    cal, thr, refs = calibration_of(bundle)
    pipe.pred.swap(bundle)  # parameters and sensor normalisation; same jitted step
    pipe.bundle, pipe.rcfg, pipe.acfg = bundle, rcfg, acfg
    pipe.cal, pipe.thr, pipe.refs = cal, thr, refs
    pipe.features.cfg = rcfg
    pipe.tracker = ResidualTracker(rcfg, cal, pipe.fps)
    # The gates and health checks read the calibration's settings too (the occlusion fraction
    # is fitted per model): theirs are replaced, their running state (timers, counts) is kept.
    pipe.health.cfg = rcfg
    fresh = OcclusionGate(rcfg, max(pipe.horizons))
    pipe.occlusion.fraction, pipe.occlusion.hold_s = fresh.fraction, fresh.hold_s
    speed = SpeedChangeGate(rcfg, pipe.channels, max(pipe.horizons))
    pipe.speed_gate.idx, pipe.speed_gate.hold_s = speed.idx, speed.hold_s
    settle = max(pipe.features.steps) / pipe.fps + 3.0 * rcfg.smooth_seconds
    pipe.occlusion.until = max(pipe.occlusion.until, now + settle)
    pipe.relearn_until = now + settle
