"""One frozen, validated configuration tree.

Layers, later ones win: code defaults, then a named preset (``foresight/presets/<name>.toml``),
then the user's TOML file, then ``FORESIGHT_<SECTION>__<KEY>`` environment variables, then CLI
``--set section.key=value`` overrides. Secrets (``SecretStr`` fields) may come only from the
environment or from a protected file named by ``FORESIGHT_<SECTION>__<KEY>_FILE``; a secret written
in a config file is refused. Every error is one line naming the key, where it came from and what
is wrong.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foresight.alarms.config import AlarmConfig
from foresight.dashboard.config import DashboardConfig
from foresight.drift.config import DriftConfig
from foresight.errors import ConfigError
from foresight.ingest.config import DataConfig, IngestConfig
from foresight.model.config import ModelConfig, TrainConfig
from foresight.monitor.config import MonitorConfig
from foresight.plc.config import PlcConfig
from foresight.residuals.config import ResidualConfig
from foresight.retrain.config import RetrainConfig
from foresight.sim.config import SimConfig
from foresight.store.config import InfluxConfig, StoreConfig

ENV_PREFIX = "FORESIGHT_"


class LineConfig(BaseModel):
    """Identity of the monitored line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("line-1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class Config(BaseModel):
    """The whole resolved configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = "default"
    line: LineConfig = LineConfig()
    data: DataConfig = DataConfig()
    sim: SimConfig = SimConfig()
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    residuals: ResidualConfig = ResidualConfig()
    alarms: AlarmConfig = AlarmConfig()
    plc: PlcConfig = PlcConfig()
    influx: InfluxConfig = InfluxConfig()
    store: StoreConfig = StoreConfig()
    monitor: MonitorConfig = MonitorConfig()
    dashboard: DashboardConfig = DashboardConfig()
    drift: DriftConfig = DriftConfig()
    retrain: RetrainConfig = RetrainConfig()

    @model_validator(mode="after")
    def _window_fits(self) -> Config:
        steps = max(max(1, round(h * self.data.fps)) for h in self.model.horizons)
        need = self.model.context + steps
        if need > self.data.window:
            raise ValueError(
                f"data.window ({self.data.window} frames) is shorter than model.context "
                f"({self.model.context}) + the longest horizon ({steps} frames at "
                f"{self.data.fps} fps) = {need}"
            )
        if self.model.context < 2:
            raise ValueError("model.context must be at least 2 frames")
        return self


SECRET_KEYS: frozenset[str] = frozenset({"plc.password", "influx.token"})


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    files = resources.files("foresight") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml"))


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{label}: file not found")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{label}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read: {e.strerror}") from None


def _load_preset(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ConfigError(
            f"key 'preset': unknown preset {name!r} (known: {', '.join(preset_names())})"
        )
    text = (resources.files("foresight") / "presets" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"key {dotted!r}: {p!r} is a value, not a table")
        node = nxt
    node[parts[-1]] = value


def _parse_value(text: str) -> Any:
    """Parse a CLI/env value as a TOML value when it is one, else keep the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _read_secret_file(path: str, env_name: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"environment {env_name}: secret file {path} not found")
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"environment {env_name}: secret file {path} is readable by others "
            f"(mode {oct(mode & 0o777)}); chmod 600 it"
        )
    return p.read_text().strip()


def _env_layer(environ: dict[str, str]) -> list[tuple[str, Any, str]]:
    layer = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        body = name[len(ENV_PREFIX) :]
        is_file = body.endswith("_FILE")
        if is_file:
            body = body[: -len("_FILE")]
        dotted = ".".join(part.lower() for part in body.split("__"))
        if is_file:
            value: Any = _read_secret_file(raw, name)
        elif dotted in SECRET_KEYS:
            value = raw
        else:
            value = _parse_value(raw)
        layer.append((dotted, value, f"environment {name}"))
    return layer


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    environ: dict[str, str] | None = None,
) -> Config:
    """Resolve and validate the configuration; raises ``ConfigError`` with one clear line."""
    environ = dict(os.environ if environ is None else environ)
    file_tree: dict[str, Any] = {}
    file_label = "defaults"
    if path is not None:
        file_label = str(path)
        file_tree = _read_toml(Path(path), file_label)
        for key in _flatten(file_tree):
            if key in SECRET_KEYS:
                raise ConfigError(
                    f"{file_label}: key {key!r}: secrets may not be written in a config file; "
                    f"set {ENV_PREFIX}{key.upper().replace('.', '__')} or ..._FILE instead"
                )
    name = preset or environ.get(f"{ENV_PREFIX}PRESET") or file_tree.get("preset") or "default"
    if not isinstance(name, str):
        raise ConfigError(f"{file_label}: key 'preset': must be a string, got {name!r}")

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    layers: list[tuple[str, Any, str]] = []
    layers += [(k, v, f"preset {name}") for k, v in _flatten(_load_preset(name)).items()]
    layers += [(k, v, file_label) for k, v in _flatten(file_tree).items()]
    layers += _env_layer(environ)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        k, v = item.split("=", 1)
        layers.append((k.strip(), _parse_value(v.strip()), f"--set {k.strip()}"))
    for key, value, label in layers:
        _set(merged, key, value)
        origin[key] = label
    merged["preset"] = name
    try:
        return Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe(e, origin, file_label)) from None


def _describe(err: ValidationError, origin: dict[str, str], file_label: str) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    key = ".".join(loc)
    source = origin.get(key) or next(
        (v for k, v in origin.items() if k.startswith(key + ".") or key.startswith(k + ".")),
        file_label,
    )
    msg = first["msg"].removeprefix("Value error, ")
    if not key:
        return f"{file_label if file_label != 'defaults' else 'configuration'}: {msg}"
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    got = first.get("input")
    detail = (
        "" if first["type"] == "extra_forbidden" or isinstance(got, dict) else f" (got {got!r})"
    )
    more = len(err.errors()) - 1
    tail = f" [and {more} more problem{'s' * (more > 1)}]" if more else ""
    return f"{source}: key {key!r}: {msg}{detail}{tail}"


def to_toml(cfg: Config) -> str:
    """Render the effective configuration as TOML, secrets masked."""
    data = json.loads(cfg.model_dump_json())
    lines: list[str] = []
    _toml_table(data, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(body: dict[str, Any], name: str, lines: list[str]) -> None:
    """Plain keys of ``body`` under ``[name]``, then its sub-tables."""
    if name:
        lines += ["", f"[{name}]"]
    for k, v in body.items():
        if isinstance(v, dict):
            continue
        lines.append(f"# {k} = (unset)" if v is None else f"{k} = {_toml_value(v)}")
    for k, v in body.items():
        if isinstance(v, dict):
            _toml_table(v, f"{name}.{k}" if name else k, lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {v!r} as TOML")


def resolved_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain JSON-able data, secrets masked (saved beside every run)."""
    return json.loads(cfg.model_dump_json())
