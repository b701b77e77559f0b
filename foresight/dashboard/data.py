"""What the dashboard shows, read through the store API and the monitor's side files only.

Nothing here imports the monitor runtime or talks to the PLC. Long windows stay cheap: trends
come from ``Store.series`` (a bounded number of time buckets), alarms from the few ``slowdown``
and ``recovering`` points, drift from its event points.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import foresight
from foresight.alarms.engine import Thresholds
from foresight.dashboard.feedback import Feedback, acknowledgements, feedback
from foresight.store import Point, Series, Store, StoreError

log = logging.getLogger(__name__)
SAMPLE_MODEL = Path(foresight.__file__).resolve().parents[1] / "data_samples" / "model"
#: trend windows offered on the pages (label -> seconds)
WINDOWS: dict[str, float] = {
    "5 min": 300,
    "30 min": 1800,
    "2 h": 7200,
    "8 h": 28800,
    "24 h": 86400,
    "7 days": 7 * 86400,
    "30 days": 30 * 86400,
}
_EPISODE_GAP_S = 1.5  # alarm points further apart than this start a new alarm


def open_store(cfg: Any) -> Store:
    """The local store, writable (for feedback points) but never forwarding itself: the
    monitor's forwarder sends what the dashboard adds on to InfluxDB."""
    return Store.open(cfg.store, None, line=cfg.line.name)


def model_dir(cfg: Any) -> Path:
    """The model the monitor is configured to run (the sample model when none is set)."""
    return Path(cfg.monitor.model) if cfg.monitor.model else SAMPLE_MODEL


def read_card_safe(path: Path) -> dict[str, Any] | None:
    """A model card, or None (logged) when the directory is missing or not a model."""
    from foresight.errors import InputError
    from foresight.model.checkpoint import read_card

    try:
        return read_card(path)
    except InputError as e:
        log.info("%s", e)
        return None


def thresholds_of(card: dict[str, Any] | None) -> Thresholds | None:
    """The calibrated alarm thresholds in a model card, or None."""
    thr = (card or {}).get("calibration", {}).get("thresholds")
    try:
        return Thresholds.from_dict(thr) if thr else None
    except Exception:  # a damaged card must not take the page down
        return None


# ------------------------------------------------------------------------------- live state
@dataclass(frozen=True)
class LiveState:
    """The monitor's state now: last alarm point and its health file."""

    state: str | None  # alarm-engine mode of the newest alarm point
    speed_limit_pct: float | None
    model: str | None
    last_ns: int | None  # time of the newest alarm point
    health: dict[str, Any] | None  # the health file, None when missing or unreadable
    health_age_s: float | None
    stale: bool  # no fresh health file: the monitor is not running (or not writing)


def read_health(path: Path) -> dict[str, Any] | None:
    """The monitor's health file, or None."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def live_state(store: Store, health_file: Path, stale_s: float, now: float | None = None):
    """``LiveState`` from the newest alarm point and the health file."""
    now = time.time() if now is None else now
    p = store.latest("alarm")
    health = read_health(health_file)
    age = now - float(health["time"]) if health and "time" in health else None
    return LiveState(
        state=p.tags.get("state") if p else None,
        speed_limit_pct=float(p.fields["speed_limit_pct"]) if p else None,
        model=p.tags.get("model") if p else None,
        last_ns=p.time_ns if p else None,
        health=health,
        health_age_s=age,
        stale=age is None or age > stale_s,
    )


def horizon_fields(point: Point | None) -> list[str]:
    """Per-horizon field names (``h0.1s`` ...) of a residual point, shortest horizon first."""
    if point is None:
        return []
    names = [k for k in point.fields if k.startswith("h") and k.endswith("s")]

    def secs(k: str) -> float:
        try:
            return float(k[1:-1])
        except ValueError:
            return math.inf

    return sorted((k for k in names if math.isfinite(secs(k))), key=secs)


def trend(
    store: Store, since_ns: int, until_ns: int, max_points: int = 600, horizons: bool = True
) -> dict[str, Series]:
    """Bucketed ``score`` and (if ``horizons``) per-horizon residuals over the window (empty
    when no data). Windows with buckets of a minute or more read the store's per-minute rollups
    (weeks of history in a fraction of a second); shorter ones scan the points."""
    fields = ["score", *(horizon_fields(store.latest("residual")) if horizons else [])]
    out = {}
    for f in fields:
        s = store.series("residual", f, since_ns, until_ns, max_points=max_points)
        if len(s.time_ns):
            out[f] = s
    return out


# ------------------------------------------------------------------------------ alarm log
@dataclass(frozen=True)
class Alarm:
    """One slow-down episode, with what operators said about it."""

    start_ns: int  # first slowdown point: the alarm's name (``alarm_ns``)
    end_ns: int  # last slowdown or recovering point
    model: str
    peak_score: float
    min_speed_pct: float
    ack: tuple[str, int] | None = None  # (operator, time ns)
    feedback: Feedback | None = None
    ongoing: bool = False  # its last point is the newest alarm point: not over yet

    @property
    def duration_s(self) -> float:
        """From the slow-down to the end of the recovery ramp."""
        return (self.end_ns - self.start_ns) / 1e9


def _episodes(points: list[Point], gap_ns: int) -> list[list[Point]]:
    runs: list[list[Point]] = []
    for p in points:
        if runs and p.time_ns - runs[-1][-1].time_ns <= gap_ns:
            runs[-1].append(p)
        else:
            runs.append([p])
    return [r for r in runs if any(q.tags.get("state") == "slowdown" for q in r)]


def alarm_episodes(store: Store, since_ns: int, until_ns: int) -> list[Alarm]:
    """Slow-downs in the window, newest first, with peak score, model and operator actions."""
    pts = store.query("alarm", since_ns, until_ns, {"state": "slowdown"})
    pts += store.query("alarm", since_ns, until_ns, {"state": "recovering"})
    pts.sort(key=lambda p: p.time_ns)
    runs = _episodes(pts, int(_EPISODE_GAP_S * 1e9))
    acks = acknowledgements(store, since_ns, until_ns)
    fbs = feedback(store, since_ns, until_ns)
    newest = store.latest("alarm")
    out = []
    for run in runs:
        first = next(q for q in run if q.tags.get("state") == "slowdown")
        start, end = first.time_ns, run[-1].time_ns
        s = store.series("residual", "score", start, end + 1, max_points=1)
        peak = float(s.max.max()) if len(s.max) else math.nan
        speed = min(float(q.fields.get("speed_limit_pct", math.nan)) for q in run)
        model = first.tags.get("model", "?")
        ongoing = newest is not None and newest.time_ns == end
        out.append(Alarm(start, end, model, peak, speed, acks.get(start), fbs.get(start), ongoing))
    return out[::-1]


# --------------------------------------------------------------------------- drift, models
@dataclass(frozen=True)
class DriftStatus:
    """Drift events in the window; ``active`` until a retrain or rollback finishes after it."""

    events: list[Point]
    active: bool

    @property
    def last(self) -> Point | None:
        """The newest drift event."""
        return self.events[-1] if self.events else None


def drift_status(store: Store, since_ns: int, until_ns: int, handled_ns: int | None) -> DriftStatus:
    """Drift points in the window; active when the newest is later than ``handled_ns``."""
    ev = store.events(since_ns, until_ns, ("drift",))
    active = bool(ev) and (handled_ns is None or ev[-1].time_ns > handled_ns)
    return DriftStatus(ev, active)


def drift_handled_ns(requests_dir: Path) -> int | None:
    """When the newest successful retrain or rollback finished (it handles earlier drift)."""
    from foresight.dashboard.requests import finished

    done = [r for r in finished(requests_dir, last=1000) if r.kind in ("retrain", "rollback")]
    return next((r.finished_ns for r in done if r.ok), None)


@dataclass(frozen=True)
class ModelVersion:
    """A model directory beside the configured one, from its card."""

    path: Path
    created: str
    code_version: str
    configured: bool  # the directory monitor.model names
    running: bool  # the model tag of the newest residual point
    thresholds: Thresholds | None
    card: dict[str, Any]


def model_versions(cfg: Any, running_model: str | None) -> list[ModelVersion]:
    """Every model directory beside the configured model, newest first."""
    current = model_dir(cfg).resolve()
    found = []
    if current.parent.is_dir():
        for d in sorted(current.parent.iterdir()):
            if not d.is_dir() or not (d / "model.json").is_file():
                continue
            card = read_card_safe(d)
            if card is None:
                continue
            created = str(card.get("created", "?"))
            found.append(
                ModelVersion(
                    d,
                    created,
                    str(card.get("code_version", "?")),
                    d.resolve() == current,
                    running_model is not None and created == running_model,
                    thresholds_of(card),
                    card,
                )
            )
    return sorted(found, key=lambda m: m.created, reverse=True)


def store_or_none(cfg: Any) -> tuple[Store | None, str | None]:
    """Open the store, or say why it cannot be (one line for the page)."""
    try:
        return open_store(cfg), None
    except StoreError as e:
        return None, str(e)
