"""Configuration of the operators' dashboard (the ``[dashboard]`` table).

Until ``Config`` carries the table, ``dashboard_config(cfg)`` falls back to the defaults.
Password hashes (``foresight dashboard --hash-password``) are not secrets in the sense of
``plc.password``: they may sit in the line's TOML file, which should still be readable only by
the people who run the line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from foresight.dashboard.auth import check_hash
from foresight.errors import ConfigError


class DashboardConfig(BaseModel):
    """Who may view and act, where the monitor's side files are, how much to plot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    viewing: Literal["open", "login"] = Field(
        "open", description="open: anyone reaching the page may look; login: operators only"
    )
    users: dict[str, str] = Field(
        default_factory=dict,
        description="operator name -> password hash (scrypt$... or pbkdf2_sha256$...); control "
        "actions need one of them to log in, so with none every control is refused",
    )
    host: str = Field("127.0.0.1", description="address streamlit listens on")
    port: int = Field(8501, ge=1, le=65535, description="port streamlit listens on")
    live_dir: str | None = Field(
        None, description="latest.npz published by the monitor; none = live/ beside health_file"
    )
    clips_dir: str | None = Field(
        None, description="evidence clips (<alarm ns>.webm); none = clips/ beside health_file"
    )
    requests_dir: str | None = Field(
        None, description="retrain/rollback/dry-run requests; none = requests/ beside health_file"
    )
    refresh_s: float = Field(2.0, ge=0.5, le=600, description="live page refresh period")
    trend_points: int = Field(
        600, ge=50, le=20_000, description="time buckets per plotted series (keeps it fast)"
    )
    stale_s: float = Field(
        10.0, gt=0, description="the health file older than this shows the monitor as stopped"
    )

    @field_validator("users")
    @classmethod
    def _hashes(cls, users: dict[str, Any]) -> dict[str, str]:
        for name, value in users.items():
            if not name or not isinstance(value, str):
                raise ValueError(f"dashboard.users.{name}: expected a password hash string")
            problem = check_hash(value)
            if problem:
                raise ValueError(f"dashboard.users.{name}: {problem}")
        return users


class Paths(NamedTuple):
    """Where the dashboard finds and leaves its files."""

    live: Path
    clips: Path
    requests: Path
    health: Path


def dashboard_config(cfg: Any) -> DashboardConfig:
    """The ``[dashboard]`` table of a ``Config``, or the defaults when it has none."""
    got = getattr(cfg, "dashboard", None)
    return got if isinstance(got, DashboardConfig) else DashboardConfig()


def paths(cfg: Any, dcfg: DashboardConfig | None = None) -> Paths:
    """Resolved side-file locations (next to ``monitor.health_file`` unless configured)."""
    dcfg = dcfg or dashboard_config(cfg)
    health = Path(cfg.monitor.health_file)
    base = health.parent
    return Paths(
        Path(dcfg.live_dir) if dcfg.live_dir else base / "live",
        Path(dcfg.clips_dir) if dcfg.clips_dir else base / "clips",
        Path(dcfg.requests_dir) if dcfg.requests_dir else base / "requests",
        health,
    )


def load_settings(
    path: str | None = None, preset: str | None = None, overrides: Sequence[str] = ()
) -> tuple[Any, DashboardConfig]:
    """The ``Config`` and the dashboard settings, like ``load_config``.

    While ``Config`` has no ``[dashboard]`` table yet, ``dashboard.*`` overrides are applied to
    the defaults here instead of by ``load_config``.
    """
    from foresight.config import Config, load_config

    rest = list(overrides)
    own: dict[str, Any] = {}
    if "dashboard" not in Config.model_fields:
        mine = [o for o in rest if o.strip().startswith("dashboard.")]
        rest = [o for o in rest if o not in mine]
        for item in mine:
            key, _, value = item.strip().removeprefix("dashboard.").partition("=")
            node = own
            *parents, leaf = key.strip().split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = _value(value.strip())
    cfg = load_config(path, preset=preset, overrides=rest)
    if not own:
        return cfg, dashboard_config(cfg)
    try:
        return cfg, DashboardConfig.model_validate(own)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"--set dashboard.{key}: {first['msg']}") from None


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
