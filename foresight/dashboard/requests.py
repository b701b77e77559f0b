"""Operator requests to the monitor and the retrain command: a directory of small JSON files.

The dashboard (or the CLI) only *asks*; the monitor and ``foresight retrain`` act. Layout of
the requests directory (``dashboard.requests_dir``, default ``requests/`` beside
``monitor.health_file``):

- ``<kind>-<time_ns>.json``: a pending request, written atomically. ``kind`` is one of
  ``KINDS``; the body is ``{"kind", "time_ns", "operator", "reason", "params"}`` with
  ``params`` = ``{}`` (retrain), ``{"model": DIR}`` (rollback: the model directory to go back
  to) or ``{"enabled": bool}`` (dry_run: shadow mode on or off).
- ``taken/<same name>``: claimed by a consumer with ``take`` (an atomic rename, so two
  consumers never both act on one request); ``report_progress`` rewrites it with ``progress``
  (0..1) and ``message`` for the dashboard.
- ``done/<same name>``: ``finish`` adds ``ok``, ``message`` and ``finished_ns`` and moves it here.

Every request needs an operator login (``foresight.dashboard.auth.require``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from foresight.dashboard.auth import Operator, require

KINDS: tuple[str, ...] = ("retrain", "rollback", "dry_run")


@dataclass(frozen=True)
class Request:
    """One operator request and, once a consumer has it, its progress and outcome."""

    kind: str
    time_ns: int
    operator: str
    reason: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    progress: float | None = None
    message: str = ""
    ok: bool | None = None
    finished_ns: int | None = None

    @property
    def name(self) -> str:
        """File name of the request."""
        return f"{self.kind}-{self.time_ns}.json"


def _write(path: Path, req: Request) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(req)) + "\n")
    os.replace(tmp, path)
    return path


def _read(path: Path) -> Request | None:
    try:
        doc = json.loads(path.read_text())
        if doc.get("kind") not in KINDS:
            return None
        return Request(**doc)
    except (OSError, ValueError, TypeError):
        return None


def _submit(directory: str | os.PathLike[str], operator: Operator | None, req: Request) -> Request:
    require(operator)
    return _queue(Path(directory), req)


def _queue(d: Path, req: Request) -> Request:
    """Write ``req``; a retrain already queued or running is returned instead (a double click,
    or a drift while one runs, does not queue two trainings)."""
    if req.kind == "retrain":
        for p in pending(d) + in_progress(d):
            if p.kind == "retrain":
                return p
    _write(d / req.name, req)
    return req


def request_retrain(
    directory: str | os.PathLike[str], operator: Operator | None, reason: str = ""
) -> Request:
    """Ask for a retrain from the current model (returns the already queued one if any)."""
    op = require(operator)
    return _submit(directory, op, Request("retrain", time.time_ns(), op.name, reason.strip()))


def request_retrain_after_drift(
    directory: str | os.PathLike[str], since_ns: int, due_ns: int, reason: str
) -> Request:
    """The monitor's own retrain request after a plant-change drift (``retrain.on_drift``): on
    the footage since ``since_ns``, not taken before ``due_ns``. No login: the configuration
    allowed it, and promotion still needs an operator."""
    params = {"since_ns": int(since_ns), "not_before_ns": int(due_ns)}
    req = Request("retrain", time.time_ns(), "monitor (drift)", reason.strip(), params)
    return _queue(Path(directory), req)


def request_rollback(
    directory: str | os.PathLike[str], operator: Operator | None, model: str, reason: str = ""
) -> Request:
    """Ask the monitor to go back to the model directory ``model``."""
    op = require(operator)
    if not model:
        raise ValueError("rollback needs the model directory to return to")
    req = Request("rollback", time.time_ns(), op.name, reason.strip(), {"model": str(model)})
    return _submit(directory, op, req)


def request_dry_run(
    directory: str | os.PathLike[str], operator: Operator | None, enabled: bool, reason: str = ""
) -> Request:
    """Ask the monitor to switch shadow mode (``plc.dry_run``) on or off."""
    op = require(operator)
    req = Request("dry_run", time.time_ns(), op.name, reason.strip(), {"enabled": bool(enabled)})
    return _submit(directory, op, req)


def _list(d: Path, kinds: tuple[str, ...] = KINDS) -> list[Request]:
    if not d.is_dir():
        return []
    got = [_read(p) for p in d.glob("*.json") if not p.name.startswith(".")]
    return sorted((r for r in got if r is not None and r.kind in kinds), key=lambda r: r.time_ns)


def pending(directory: str | os.PathLike[str], kinds: tuple[str, ...] = KINDS) -> list[Request]:
    """Requests nobody has taken yet, oldest first."""
    return _list(Path(directory), kinds)


def in_progress(directory: str | os.PathLike[str]) -> list[Request]:
    """Requests a consumer has taken and not finished."""
    return _list(Path(directory) / "taken")


def finished(directory: str | os.PathLike[str], last: int = 20) -> list[Request]:
    """The ``last`` finished requests, newest first."""
    return _list(Path(directory) / "done")[::-1][:last]


def take(directory: str | os.PathLike[str], kinds: tuple[str, ...] = KINDS) -> list[Request]:
    """Claim pending requests of ``kinds`` (oldest first); each is returned to one taker only."""
    d = Path(directory)
    (d / "taken").mkdir(parents=True, exist_ok=True)
    out = []
    now = time.time_ns()
    for req in pending(d, kinds):
        if int(req.params.get("not_before_ns", 0)) > now:
            continue  # not due yet (a retrain after a drift waits for footage)
        try:
            os.rename(d / req.name, d / "taken" / req.name)
        except FileNotFoundError:
            continue  # another consumer was first
        out.append(req)
    return out


def report_progress(
    directory: str | os.PathLike[str], req: Request, progress: float, message: str = ""
) -> Request:
    """Publish how far a taken request has got (0..1) for the dashboard."""
    upd = Request(**{**asdict(req), "progress": float(progress), "message": message})
    _write(Path(directory) / "taken" / req.name, upd)
    return upd


def finish(directory: str | os.PathLike[str], req: Request, ok: bool, message: str = "") -> Request:
    """Record the outcome of a taken request and move it to ``done/``."""
    d = Path(directory)
    body = {**asdict(req), "ok": bool(ok), "message": message, "finished_ns": time.time_ns()}
    done = Request(**{**body, "progress": 1.0 if ok else req.progress})
    _write(d / "done" / req.name, done)
    (d / "taken" / req.name).unlink(missing_ok=True)
    return done
