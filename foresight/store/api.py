"""The one small store API the runtime writes through and the dashboard and CLI read through.

Writes land in the local SQLite spool (durable) and, when ``influx.url`` is set, a background
``Forwarder`` copies them to InfluxDB. Reads (``query``, ``series``, ``latest``, ``events``)
always use the local file, so the dashboard works with no InfluxDB at all. ``append`` commits
to disk: call the ``write_*`` helpers from a telemetry task or thread, never the PLC path.
The measurement schema is in ``foresight.store.influx``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from foresight.alarms.engine import MODES
from foresight.store.config import InfluxConfig, StoreConfig
from foresight.store.influx import Forwarder, ForwarderStats
from foresight.store.spool import (
    ROLLUP_MEASUREMENTS,
    ROLLUP_NS,
    Point,
    Spool,
    SpoolStats,
    StoreError,
    decode,
)

#: Measurements that are events (discrete, shown as markers/lists rather than curves).
#: Extension point: operator feedback on alarms (confirmed / false alarm / comment) will be a
#: new measurement ``feedback`` tagged ``line, alarm_ns`` (the alarm point's ``time_ns``) with
#: numeric fields, written by a ``write_feedback`` helper here and added to this tuple;
#: ``events`` then returns it beside the alarms it refers to. No schema change is needed.
EVENT_MEASUREMENTS: tuple[str, ...] = ("alarm", "command", "health", "drift", "model", "feedback")


class Series(NamedTuple):
    """A downsampled field: one row per time bucket (bucket centre, mean, min, max, count)."""

    time_ns: np.ndarray
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: np.ndarray


def _now(time_ns: int | None) -> int:
    return time.time_ns() if time_ns is None else int(time_ns)


def _key(name: str) -> str:
    """JSON path of a tag or field name (quoted, so ``h0.1s`` works)."""
    if '"' in name or "\\" in name:
        raise ValueError(f"tag/field name {name!r} may not contain quotes or backslashes")
    return f'$."{name}"'


def horizon_field(h: float) -> str:
    """Field name of the residual at horizon ``h`` seconds: ``h0.1s``, ``h1s``."""
    return f"h{h:g}s"


class Store:
    """Write telemetry, read local history; forwarding to InfluxDB runs in the background."""

    def __init__(self, spool: Spool, forwarder: Forwarder | None = None, line: str = "line-1"):
        self.spool, self.forwarder, self.line = spool, forwarder, line

    @classmethod
    def open(
        cls,
        cfg: StoreConfig | None = None,
        influx: InfluxConfig | None = None,
        *,
        line: str = "line-1",
        readonly: bool = False,
    ) -> Store:
        """Open the spool and, when ``influx.url`` is set and not read-only, start forwarding."""
        spool = Spool(cfg or StoreConfig(), readonly=readonly)
        fwd = None
        if influx is not None and influx.url is not None and not readonly:
            fwd = Forwarder(spool, influx).start()
        return cls(spool, fwd, line)

    def close(self, flush_timeout_s: float = 2.0) -> None:
        """Give forwarding a moment to finish, stop it (unsent points stay spooled), close."""
        if self.forwarder is not None:
            if self.forwarder.backoff_s == 0 and flush_timeout_s > 0:
                self.forwarder.flush(flush_timeout_s)
            self.forwarder.close()
        self.spool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- writes
    def write(self, points: Sequence[Point]) -> None:
        """Append points durably (one transaction)."""
        self.spool.append(points)

    def _one(self, measurement: str, tags: dict[str, str], fields: dict[str, Any], t: int | None):
        self.spool.append([Point(measurement, {"line": self.line, **tags}, fields, _now(t))])

    def write_residual(
        self,
        model: str,
        score: float,
        instant: float,
        horizons: Mapping[float, float] | None = None,
        sensor_z: Mapping[str, float] | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Anomaly score, instant residual, residual per horizon (s) and per-sensor z."""
        fields: dict[str, Any] = {"score": float(score), "instant": float(instant)}
        fields |= {horizon_field(h): float(v) for h, v in (horizons or {}).items()}
        fields |= {f"z_{k}": float(v) for k, v in (sensor_z or {}).items()}
        self._one("residual", {"model": model}, fields, time_ns)

    def write_alarm(
        self,
        model: str,
        state: str,
        alarm: bool,
        speed_limit_pct: float,
        time_ns: int | None = None,
    ) -> None:
        """Alarm-engine mode (tag and numeric code), alarm flag and the commanded limit."""
        if state not in MODES:
            raise ValueError(f"unknown alarm state {state!r} (known: {', '.join(MODES)})")
        fields: dict[str, Any] = {"code": MODES.index(state), "alarm": int(bool(alarm))}
        fields["speed_limit_pct"] = float(speed_limit_pct)
        self._one("alarm", {"model": model, "state": state}, fields, time_ns)

    def write_command(
        self,
        reason: str,
        requested_pct: float,
        applied_pct: float | None = None,
        confirmed: bool = False,
        time_ns: int | None = None,
    ) -> None:
        """A speed-limit command to the PLC and its read-back (``applied_pct`` None = unknown)."""
        fields: dict[str, Any] = {"requested_pct": float(requested_pct)}
        fields["applied_pct"] = math.nan if applied_pct is None else float(applied_pct)
        fields["confirmed"] = int(bool(confirmed))
        self._one("command", {"reason": reason}, fields, time_ns)

    def write_health(
        self, reason: str, code: int, dropped_frames: int = 0, time_ns: int | None = None
    ) -> None:
        """Runtime health: a numeric code (0 = healthy), the reason tag and dropped frames."""
        fields = {"code": int(code), "dropped_frames": int(dropped_frames)}
        self._one("health", {"reason": reason}, fields, time_ns)

    def write_drift(
        self, kind: str, statistic: float = math.nan, time_ns: int | None = None
    ) -> None:
        """A drift detection of ``kind`` with the detector's statistic."""
        self._one("drift", {"kind": kind}, {"detected": 1, "statistic": statistic}, time_ns)

    # ------------------------------------------------------------------------------ reads
    @staticmethod
    def _where(
        measurement: str, since_ns: int, until_ns: int, tags: Mapping[str, str] | None
    ) -> tuple[str, list[Any]]:
        sql = "measurement = ? AND time_ns >= ? AND time_ns < ?"
        params: list[Any] = [measurement, int(since_ns), int(until_ns)]
        for k, v in (tags or {}).items():
            sql += " AND json_extract(tags, ?) = ?"
            params += [_key(k), v]
        return sql, params

    def query(
        self,
        measurement: str,
        since_ns: int,
        until_ns: int,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[Point]:
        """Points of ``measurement`` with ``since_ns <= time < until_ns``, oldest first."""
        where, params = self._where(measurement, since_ns, until_ns, tags)
        rows = self.spool.read(
            f"SELECT measurement, tags, fields, time_ns FROM points WHERE {where} "
            "ORDER BY time_ns, id LIMIT ?",
            [*params, -1 if limit is None else int(limit)],
        )
        return [decode(r) for r in rows]

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> Point | None:
        """The newest point of ``measurement`` (matching ``tags``), or None."""
        where, params = self._where(measurement, -(2**63), 2**63 - 1, tags)
        rows = self.spool.read(
            f"SELECT measurement, tags, fields, time_ns FROM points WHERE {where} "
            "ORDER BY time_ns DESC, id DESC LIMIT 1",
            params,
        )
        return decode(rows[0]) if rows else None

    def series(
        self,
        measurement: str,
        field: str,
        since_ns: int,
        until_ns: int,
        max_points: int = 500,
        tags: Mapping[str, str] | None = None,
    ) -> Series:
        """``field`` over ``[since_ns, until_ns)`` in at most ``max_points`` equal time buckets
        (mean, min and max per bucket, so a short spike survives downsampling)."""
        if until_ns <= since_ns or max_points < 1:
            raise ValueError("series needs since_ns < until_ns and max_points >= 1")
        width = max(1, -(-(int(until_ns) - int(since_ns)) // int(max_points)))
        if width >= ROLLUP_NS and not tags and measurement in ROLLUP_MEASUREMENTS:
            got = self._rolled(measurement, field, int(since_ns), int(until_ns), width)
            if got is not None:
                return got
        where, params = self._where(measurement, since_ns, until_ns, tags)
        rows = self.spool.read(
            "SELECT (time_ns - ?) / ? AS b, avg(v), min(v), max(v), count(v) FROM "
            f"(SELECT time_ns, json_extract(fields, ?) AS v FROM points WHERE {where}) "
            "WHERE v IS NOT NULL GROUP BY b ORDER BY b",
            [int(since_ns), width, _key(field), *params],
        )
        return _series(rows, int(since_ns), width)

    def _rolled(
        self, measurement: str, field: str, since_ns: int, until_ns: int, width: int
    ) -> Series | None:
        """``series`` from the per-minute rollups (buckets of whole minutes; None: a store
        without rollups, read-only, written before they existed)."""
        width = -(-width // ROLLUP_NS) * ROLLUP_NS  # whole minutes, at most the buckets asked
        first, end = since_ns // ROLLUP_NS, -(-until_ns // ROLLUP_NS)
        try:
            rows = self.spool.read(
                "SELECT (minute * ? - ?) / ? AS b, sum(total) / sum(n), min(lo), max(hi), "
                "sum(n) FROM rollup WHERE measurement = ? AND field = ? AND minute >= ? "
                "AND minute < ? GROUP BY b ORDER BY b",
                [ROLLUP_NS, since_ns, width, measurement, field, first, end],
            )
        except StoreError:
            return None
        return _series(rows, since_ns, width)

    def events(
        self,
        since_ns: int,
        until_ns: int,
        measurements: Sequence[str] = EVENT_MEASUREMENTS,
        limit: int | None = None,
    ) -> list[Point]:
        """Event points of all ``measurements`` in the window, merged oldest first."""
        marks = ", ".join("?" for _ in measurements)
        rows = self.spool.read(
            "SELECT measurement, tags, fields, time_ns FROM points "
            f"WHERE measurement IN ({marks}) AND time_ns >= ? AND time_ns < ? "
            "ORDER BY time_ns, id LIMIT ?",
            [*measurements, int(since_ns), int(until_ns), -1 if limit is None else int(limit)],
        )
        return [decode(r) for r in rows]

    def stats(self) -> tuple[SpoolStats, ForwarderStats | None]:
        """Spool counters and, when forwarding, the forwarder's."""
        fwd = self.forwarder.stats() if self.forwarder is not None else None
        return self.spool.stats(), fwd


def _series(rows: list[tuple], since_ns: int, width: int) -> Series:
    """Rows of (bucket index, mean, min, max, count) as a ``Series`` timed at bucket centres."""
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    t = since_ns + a[:, 0].astype(np.int64) * width + width // 2
    return Series(t, a[:, 1], a[:, 2], a[:, 3], a[:, 4].astype(np.int64))
