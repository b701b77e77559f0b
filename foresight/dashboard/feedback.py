"""Operator feedback on alarms and acknowledgements, kept durably for calibration and retraining.

Where: ``operator.sqlite`` beside the store's spool (``store.path``), tables ``feedback`` and
``acks``, one row per action (history kept; the newest row per alarm counts). It is a separate
file because the spool prunes forwarded points after ``store.retention_days`` and labels must
outlive that. Every action is also mirrored into the store as a ``feedback`` point (tags
``line, alarm_ns, label, operator``; fields ``code`` = index in ``LABELS``, ``ack``) when the
store is writable, so it reaches InfluxDB with the rest of the telemetry.

An alarm is named by ``alarm_ns``: the ``time_ns`` of the first ``slowdown`` alarm point of the
episode (``foresight.dashboard.data.alarm_episodes``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from foresight.dashboard.auth import Operator, require
from foresight.store import Point, Store

#: what an operator may say about an alarm
LABELS: tuple[str, ...] = ("jam_precursor", "false_alarm", "unknown")
FILE = "operator.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_ns INTEGER NOT NULL, label TEXT NOT NULL,
    operator TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', time_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_alarm ON feedback (alarm_ns);
CREATE TABLE IF NOT EXISTS acks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_ns INTEGER NOT NULL,
    operator TEXT NOT NULL, time_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS acks_alarm ON acks (alarm_ns);
"""


class Feedback(NamedTuple):
    """One operator's verdict on one alarm."""

    alarm_ns: int
    label: str
    operator: str
    note: str
    time_ns: int


def log_path(store: Store) -> Path:
    """The operator log beside ``store``'s spool file."""
    return Path(store.spool.path).with_name(FILE)


@contextlib.contextmanager
def _db(path: Path, write: bool) -> Iterator[sqlite3.Connection | None]:
    if not write and not path.is_file():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout=10000")
        if write:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
        yield con
    finally:
        con.close()


def _mirror(store: Store, alarm_ns: int, tags: dict[str, str], fields: dict[str, Any]) -> None:
    if store.spool.readonly:
        return
    tags = {"line": store.line, "alarm_ns": str(int(alarm_ns)), **tags}
    store.write([Point("feedback", tags, fields, time.time_ns())])


def record_feedback(
    store: Store, operator: Operator | None, alarm_ns: int, label: str, note: str = ""
) -> Feedback:
    """Save ``operator``'s ``label`` for the alarm ``alarm_ns`` (needs a login)."""
    op = require(operator)
    if label not in LABELS:
        raise ValueError(f"unknown feedback label {label!r} (known: {', '.join(LABELS)})")
    fb = Feedback(int(alarm_ns), label, op.name, note.strip()[:500], time.time_ns())
    with _db(log_path(store), write=True) as con:
        con.execute(
            "INSERT INTO feedback (alarm_ns, label, operator, note, time_ns) VALUES (?,?,?,?,?)",
            fb,
        )
    _mirror(
        store, fb.alarm_ns, {"label": label, "operator": op.name}, {"code": LABELS.index(label)}
    )
    return fb


def acknowledge(store: Store, operator: Operator | None, alarm_ns: int) -> int:
    """Record that ``operator`` has seen the alarm ``alarm_ns`` (needs a login); returns the
    acknowledgement time (ns)."""
    op = require(operator)
    now = time.time_ns()
    with _db(log_path(store), write=True) as con:
        con.execute(
            "INSERT INTO acks (alarm_ns, operator, time_ns) VALUES (?,?,?)",
            (int(alarm_ns), op.name, now),
        )
    _mirror(store, alarm_ns, {"label": "ack", "operator": op.name}, {"ack": 1})
    return now


def feedback(store: Store, since_ns: int, until_ns: int) -> dict[int, Feedback]:
    """The newest verdict per alarm with ``since_ns <= alarm_ns < until_ns``."""
    with _db(log_path(store), write=False) as con:
        if con is None:
            return {}
        try:
            rows = con.execute(
                "SELECT alarm_ns, label, operator, note, time_ns FROM feedback "
                "WHERE alarm_ns >= ? AND alarm_ns < ? ORDER BY time_ns, id",
                (int(since_ns), int(until_ns)),
            ).fetchall()
        except sqlite3.OperationalError:  # file exists, nothing written yet
            return {}
    return {r[0]: Feedback(*r) for r in rows}


def feedback_labels(store: Store, since_ns: int, until_ns: int) -> dict[int, str]:
    """``alarm_ns -> label`` (newest verdict) for calibration and retraining: confirmed
    ``jam_precursor`` alarms belong in the regression set, ``false_alarm`` windows are normal
    footage; ``unknown`` ones are best left out of both."""
    return {k: v.label for k, v in feedback(store, since_ns, until_ns).items()}


def acknowledgements(store: Store, since_ns: int, until_ns: int) -> dict[int, tuple[str, int]]:
    """``alarm_ns -> (operator, ack time ns)`` (first acknowledgement) in the window."""
    with _db(log_path(store), write=False) as con:
        if con is None:
            return {}
        try:
            rows = con.execute(
                "SELECT alarm_ns, operator, time_ns FROM acks "
                "WHERE alarm_ns >= ? AND alarm_ns < ? ORDER BY time_ns DESC, id DESC",
                (int(since_ns), int(until_ns)),
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
    return {r[0]: (r[1], r[2]) for r in rows}
