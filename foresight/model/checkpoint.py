"""Model directories: orbax weights plus a JSON model card, written atomically.

Layout of ``MODEL/``: ``weights/`` (orbax: parameters, sensor normalisation and, once
calibrated, the residual statistics and alarm thresholds) and ``model.json`` (the card: resolved
config with secrets masked, data settings, manifest hashes of the footage it learned from, training
metrics, code version). A model is built in ``MODEL.partial-*`` beside the target and renamed into
place, so a crash never leaves a half-written model where the monitor would load it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from foresight import __version__
from foresight.errors import InputError
from foresight.model.config import ModelConfig
from foresight.model.core import Norm
from foresight.model.network import WorldModel

FORMAT = "foresight-model/1"
ARCH_KEYS = ("conv", "embed", "deter", "stoch", "hidden")


@dataclass
class ModelBundle:
    """A loaded (or freshly trained) model: network, normalisation, settings and card."""

    model: WorldModel
    norm: Norm
    model_cfg: ModelConfig
    data: dict[str, Any]  # image_size, fps, channels, window
    card: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # calibration arrays (residuals, alarms)

    @property
    def steps(self) -> tuple[int, ...]:
        """Horizons in frames at the model's rate."""
        return horizon_steps(self.model_cfg, self.data["fps"])

    @property
    def roi(self) -> tuple[int, int, int, int] | None:
        """The crop (x, y, w, h) of the camera frame the model's footage was cut with, or None."""
        roi = (self.card.get("config", {}).get("ingest", {}) or {}).get("roi")
        return tuple(int(v) for v in roi) if roi else None


def horizon_steps(cfg: ModelConfig, fps: float) -> tuple[int, ...]:
    """Horizons in seconds to whole frames ahead (at least one), ascending and unique."""
    return tuple(sorted({max(1, round(h * fps)) for h in cfg.horizons}))


def build_model(cfg: ModelConfig, image_size: int, n_sensors: int, seed: int = 0) -> WorldModel:
    """A freshly initialised world model."""
    return WorldModel(cfg, image_size, n_sensors, rngs=nnx.Rngs(seed))


def code_version() -> str:
    """Foresight's version plus the git commit when run from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def _tree(bundle: ModelBundle) -> dict[str, Any]:
    params = nnx.to_pure_dict(nnx.state(bundle.model, nnx.Param))
    norm = {"mean": bundle.norm.mean, "std": bundle.norm.std, "diff": bundle.norm.diff}
    return {"params": params, "norm": norm, "extra": bundle.extra}


def save_model(bundle: ModelBundle, path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to the model directory ``path`` atomically; returns the path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tree = jax.tree.map(np.asarray, _tree(bundle))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp / "weights", tree)
    card = dict(bundle.card)
    card.update(
        format=FORMAT,
        code_version=card.get("code_version") or code_version(),
        created=card.get("created") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        model=json.loads(bundle.model_cfg.model_dump_json()),
        data=bundle.data,
        n_sensors=bundle.model.n_sensors,
        action_index=bundle.norm.action_index,
        extra_keys=sorted(bundle.extra),
    )
    (tmp / "model.json").write_text(json.dumps(card, indent=2, default=_jsonable) + "\n")
    old = path.parent / f"{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic, jnp.ndarray, np.ndarray)):
        return np.asarray(v).tolist()
    return str(v)


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card of a model directory, with clear errors for a missing or corrupt one."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such model directory")
    card_file = path / "model.json"
    if not card_file.is_file():
        raise InputError(f"{path}: not a Foresight model (no model.json)")
    try:
        card = json.loads(card_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{card_file}: corrupt model card: {e}") from None
    if card.get("format") != FORMAT:
        raise InputError(f"{card_file}: unsupported format {card.get('format')!r}")
    return card


def check_compatible(card: dict[str, Any], cfg: ModelConfig, data: dict[str, Any], where: str):
    """Refuse to fine-tune or run a model whose architecture or inputs differ from ``cfg``."""
    pairs = [(f"model.{k}", card["model"].get(k), getattr(cfg, k)) for k in ARCH_KEYS]
    pairs += [(f"data.{k}", card["data"].get(k), data.get(k)) for k in ("image_size", "channels")]
    for name, have, want in pairs:
        if _plain(have) != _plain(want):
            raise InputError(
                f"{where}: incompatible checkpoint: {name} is {have} there but {want} in the config"
            )


def _plain(v: Any) -> Any:
    """Tuples and lists compare equal (JSON turns one into the other)."""
    return list(v) if isinstance(v, (list, tuple)) else v


def load_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a model directory written by ``save_model``."""
    path = Path(path).resolve()
    card = read_card(path)
    try:
        cfg = ModelConfig.model_validate(card["model"])
        data = card["data"]
        model = build_model(cfg, int(data["image_size"]), int(card["n_sensors"]))
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"{path / 'model.json'}: corrupt model card: {e}") from None
    abstract = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    s = int(card["n_sensors"])
    target = {
        "params": abstract,
        "norm": {
            "mean": np.zeros(s, np.float32),
            "std": np.ones(s, np.float32),
            "diff": np.zeros(s, bool),
        },
    }
    if not (path / "weights").is_dir():
        raise InputError(f"{path}: corrupt model: weights/ is missing")
    try:
        with ocp.StandardCheckpointer() as ckpt:
            meta = ckpt.metadata(path / "weights")
            tree_meta = getattr(meta, "item_metadata", meta)
            extra_abs = _abstract_extra(tree_meta)
            target["extra"] = extra_abs
            abstract_target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
            tree = ckpt.restore(path / "weights", abstract_target)
    except Exception as e:  # orbax raises many types for damaged files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: corrupt or unreadable weights: {first[:200]}") from None
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, tree["params"])
    nnx.update(model, state)
    n = tree["norm"]
    norm = Norm(
        jnp.asarray(n["mean"]),
        jnp.asarray(n["std"]),
        jnp.asarray(n["diff"], bool),
        action_index=int(card.get("action_index", -1)),
    )
    extra = {k: np.asarray(v) for k, v in tree.get("extra", {}).items()}
    return ModelBundle(model, norm, cfg, data, card, extra)


def _abstract_extra(meta: Any) -> dict[str, Any]:
    """Shapes of the optional calibration arrays stored with the weights."""
    try:
        extra = meta["extra"]
    except (KeyError, TypeError):
        return {}
    out = {}
    for k, v in dict(extra).items():
        out[k] = np.zeros(tuple(v.shape), np.dtype(v.dtype))
    return out
