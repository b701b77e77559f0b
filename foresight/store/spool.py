"""Durable local spool of telemetry points: one SQLite file in WAL mode.

Every point is appended here first, in one transaction per ``append`` (all or nothing), then
forwarded to InfluxDB by ``foresight.store.influx.Forwarder``, which ``ack``\\ s what the server
took. Forwarded points stay as the local history the dashboard reads until ``retention_days``
prunes them; unforwarded points are only ever removed by the ``max_points`` bound (oldest
first, counted in ``dropped`` and logged). Ids grow monotonically (``AUTOINCREMENT``), so
``ack(up_to_id)`` after a restart picks up exactly where forwarding stopped.

Durability: WAL with ``synchronous=NORMAL`` by default, so a committed append survives a crash
of the process; after a power cut the last commits (those after the last WAL checkpoint sync)
may be lost but the file is never left half-written. ``synchronous="full"`` fsyncs every
commit (see ``StoreConfig``). The counters (rows, pending, dropped, rejected) live in the
same file and change inside the same transactions, so they stay exact across restarts and
across processes writing one file.

**Rollups** keep long trends cheap to draw: every numeric field of the ``ROLLUP_MEASUREMENTS``
points is also summed per minute (count, sum, min, max) in the ``rollup`` table, in the same
transaction as the points. The dashboard reads a window of weeks from those rows instead of
scanning millions of points; they are tiny (one row per field and minute) and kept for
``ROLLUP_DAYS``, beyond the points' own retention. A store written before rollups existed is
backfilled once, when a writer first opens it.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foresight.errors import ForesightError
from foresight.store.config import StoreConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PENDING, FORWARDED, REJECTED = 0, 1, 2
_PRUNE_EVERY_S = 60.0
_PRUNE_CHUNK = 20_000
_WARN_EVERY_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS points_pending ON points (id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS points_series ON points (measurement, time_ns);
CREATE INDEX IF NOT EXISTS points_time ON points (time_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollup (
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    minute INTEGER NOT NULL,
    n INTEGER NOT NULL,
    total REAL NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    PRIMARY KEY (measurement, field, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_minute ON rollup (minute);
"""
ROLLUP_MEASUREMENTS = ("residual",)  #: measurements whose fields get per-minute rollups
ROLLUP_NS = 60 * 10**9  #: rollup bucket
ROLLUP_DAYS = 400.0  #: rollups are kept this long (points: ``retention_days``)
_UPSERT = (
    "INSERT INTO rollup VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (measurement, field, minute) "
    "DO UPDATE SET n = n + excluded.n, total = total + excluded.total, "
    "lo = min(lo, excluded.lo), hi = max(hi, excluded.hi)"
)
_COUNTERS = ("rows", "pending", "dropped", "rejected")


class StoreError(ForesightError):
    """The local store file cannot be opened or written: names the file and the problem."""


@dataclass(frozen=True)
class Point:
    """One telemetry point: tags are strings, fields numbers (non-finite floats are not kept)."""

    measurement: str
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, float | int | bool] = field(default_factory=dict)
    time_ns: int = 0


@dataclass(frozen=True)
class SpoolStats:
    """Counters of a spool at one moment."""

    path: str
    rows: int  #: points held (forwarded + pending + rejected)
    pending: int  #: points not yet forwarded
    dropped: int  #: unforwarded points removed by the max_points bound, ever
    rejected: int  #: points the server refused as malformed (kept locally, never resent)
    oldest_pending_ns: int | None
    size_bytes: int


def _encode(p: Point) -> tuple[int, str, str, str]:
    if not isinstance(p.measurement, str) or not p.measurement:
        raise ValueError(f"point measurement must be a non-empty string, got {p.measurement!r}")
    for k, v in p.tags.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise ValueError(f"{p.measurement}: tag {k!r}={v!r} must be non-empty str -> str")
    if not isinstance(p.time_ns, int) or not -(2**63) <= p.time_ns < 2**63:
        raise ValueError(f"{p.measurement}: time_ns must be an int64 of ns, got {p.time_ns!r}")
    fields: dict[str, float | int | bool] = {}
    for k, v in p.fields.items():
        if not isinstance(v, int | float) or not isinstance(k, str) or not k:
            raise ValueError(f"{p.measurement}: field {k!r}={v!r} must be a number or bool")
        if isinstance(v, float) and not math.isfinite(v):
            continue  # NaN = "no value"; neither JSON in SQLite nor line protocol carries it
        fields[k] = v
    tags = json.dumps(dict(sorted(p.tags.items())), separators=(",", ":"))
    return p.time_ns, p.measurement, tags, json.dumps(fields, separators=(",", ":"))


def _rollups(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Per-minute (measurement, field, minute, n, sum, min, max) of encoded point rows."""
    acc: dict[tuple[str, str, int], list[float]] = {}
    for t, m, _tags, fields in rows:
        if m not in ROLLUP_MEASUREMENTS:
            continue
        minute = int(t) // ROLLUP_NS
        for k, v in json.loads(fields).items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            a = acc.get((m, k, minute))
            if a is None:
                acc[(m, k, minute)] = [1, v, v, v]
            else:
                a[0] += 1
                a[1] += v
                a[2] = min(a[2], v)
                a[3] = max(a[3], v)
    return [(*key, *vals) for key, vals in acc.items()]


def decode(row: Sequence[Any]) -> Point:
    """Point from a ``(measurement, tags_json, fields_json, time_ns)`` row."""
    return Point(row[0], json.loads(row[1]), json.loads(row[2]), int(row[3]))


class Spool:
    """Thread-safe durable point spool (one writer connection, one reader connection)."""

    def __init__(self, cfg: StoreConfig | None = None, *, readonly: bool = False) -> None:
        self.cfg = cfg or StoreConfig()
        self.path = Path(self.cfg.path)
        self.readonly = readonly
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._last_prune = -math.inf
        self._last_warn = -math.inf
        self._w: sqlite3.Connection | None = None
        self._r = self._open()

    def _fail(self, what: str, err: BaseException) -> StoreError:
        if "unable to open" in str(err) or "readonly" in str(err):
            what = "cannot open or write the file (is its directory writable?)"
        return StoreError(f"store {self.path}: {what}: {err}")

    def _open(self) -> sqlite3.Connection:
        p = self.path
        if p.is_dir():
            raise StoreError(f"store {p}: is a directory, expected a SQLite file path")
        if self.readonly and not p.is_file():
            raise StoreError(f"store {p}: no such file (nothing has been recorded yet)")
        if not self.readonly:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"store {p}: cannot create its directory: {e}") from None
            try:
                self._w = self._connect(f"file:{p}")
                self._w.executescript(_SCHEMA)  # before WAL: reads the header, fails fast
                self._w.execute("PRAGMA journal_mode=WAL")
                self._w.execute(f"PRAGMA synchronous={self.cfg.synchronous.upper()}")
                self._init_meta(self._w)
            except sqlite3.DatabaseError as e:
                self.close()
                raise self._fail("not a usable Foresight SQLite store", e) from None
        try:
            r = self._connect(f"file:{p}?mode=ro" if self.readonly else f"file:{p}")
            self._read_meta(r)
        except sqlite3.DatabaseError as e:
            self.close()
            raise self._fail("not a readable Foresight SQLite store", e) from None
        return r

    @staticmethod
    def _connect(uri: str) -> sqlite3.Connection:
        con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout=10000")
        return con

    def _init_meta(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            got = dict(con.execute("SELECT key, value FROM meta").fetchall())
            version = got.get("schema", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
            if "schema" not in got:  # new file, or counters lost: count once
                rows, pending = con.execute(
                    "SELECT count(*), coalesce(sum(state = 0), 0) FROM points"
                ).fetchone()
                init = {"schema": SCHEMA_VERSION, "rows": rows, "pending": pending}
                init |= {"dropped": 0, "rejected": 0}
                con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", init.items())
            if "rollups" not in got:  # points from before rollups: summed once
                marks = ", ".join("?" for _ in ROLLUP_MEASUREMENTS)
                cur = con.execute(
                    "SELECT time_ns, measurement, tags, fields FROM points "
                    f"WHERE measurement IN ({marks})",
                    ROLLUP_MEASUREMENTS,
                )
                log.info("store %s: summing existing points into per-minute rollups", self.path)
                while chunk := cur.fetchmany(50_000):
                    con.executemany(_UPSERT, _rollups(chunk))
                con.execute("INSERT OR REPLACE INTO meta VALUES ('rollups', 1)")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _read_meta(con: sqlite3.Connection) -> dict[str, int]:
        got = dict(con.execute("SELECT key, value FROM meta").fetchall())
        return {k: int(got.get(k, 0)) for k in _COUNTERS}

    def _writer(self) -> sqlite3.Connection:
        if self._w is None:
            raise StoreError(f"store {self.path}: opened read-only or closed")
        return self._w

    def _transaction(self, body: Any) -> Any:
        """Run ``body(con, counters)`` in one IMMEDIATE transaction and save the counters."""
        with self._wlock:
            con = self._writer()
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    counters = self._read_meta(con)
                    result = body(con, counters)
                    con.executemany(
                        "UPDATE meta SET value = ? WHERE key = ?",
                        [(counters[k], k) for k in _COUNTERS],
                    )
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._fail("write failed", e) from None
            return result

    def append(self, points: Sequence[Point]) -> None:
        """Store ``points`` durably in one transaction (all or none)."""
        rows = [_encode(p) for p in points]
        if not rows:
            return
        limit = self.cfg.max_points

        def body(con: sqlite3.Connection, c: dict[str, int]) -> None:
            nonlocal rows
            if len(rows) > limit:
                self._note_drop(c, len(rows) - limit, "batch larger than the bound")
                rows = rows[-limit:]
            over = c["rows"] + len(rows) - limit
            if over > 0:
                self._evict(con, c, over)
            con.executemany(
                "INSERT INTO points (time_ns, measurement, tags, fields) VALUES (?, ?, ?, ?)",
                rows,
            )
            con.executemany(_UPSERT, _rollups(rows))
            c["rows"] += len(rows)
            c["pending"] += len(rows)

        self._transaction(body)
        if time.monotonic() - self._last_prune > _PRUNE_EVERY_S:
            self.prune()

    def _evict(self, con: sqlite3.Connection, c: dict[str, int], over: int) -> None:
        done = min(over, c["rows"] - c["pending"])
        if done > 0:  # forwarded (or rejected) points go first
            cur = con.execute(
                "DELETE FROM points WHERE id IN "
                "(SELECT id FROM points WHERE state != 0 ORDER BY id LIMIT ?)",
                (done,),
            )
            c["rows"] -= cur.rowcount
            over -= cur.rowcount
        if over > 0:
            cur = con.execute(
                "DELETE FROM points WHERE id IN "
                "(SELECT id FROM points WHERE state = 0 ORDER BY id LIMIT ?)",
                (over,),
            )
            c["rows"] -= cur.rowcount
            c["pending"] -= cur.rowcount
            self._note_drop(c, cur.rowcount, "spool full (max_points)")

    def _note_drop(self, c: dict[str, int], n: int, why: str) -> None:
        c["dropped"] += n
        now = time.monotonic()
        if now - self._last_warn >= _WARN_EVERY_S:
            self._last_warn = now
            log.warning(
                "store %s: %s: dropped %d unforwarded points (%d in all); raise "
                "store.max_points or fix forwarding",
                self.path,
                why,
                n,
                c["dropped"],
            )

    def pending(self, limit: int) -> list[tuple[int, Point]]:
        """The oldest ``limit`` unforwarded points, as ``(id, point)`` in id order."""
        with self._rlock:
            rows = self._r.execute(
                "SELECT id, measurement, tags, fields, time_ns FROM points "
                "WHERE state = 0 ORDER BY id LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [(r[0], decode(r[1:])) for r in rows]

    def ack(self, up_to_id: int) -> int:
        """Mark every unforwarded point with ``id <= up_to_id`` forwarded; returns how many."""

        def body(con: sqlite3.Connection, c: dict[str, int]) -> int:
            cur = con.execute(
                "UPDATE points SET state = 1 WHERE state = 0 AND id <= ?", (int(up_to_id),)
            )
            c["pending"] -= cur.rowcount
            return cur.rowcount

        return self._transaction(body)

    def reject(self, ids: Sequence[int]) -> int:
        """Mark points the server refuses as malformed: kept locally, never resent."""

        def body(con: sqlite3.Connection, c: dict[str, int]) -> int:
            cur = con.executemany(
                "UPDATE points SET state = 2 WHERE state = 0 AND id = ?", [(int(i),) for i in ids]
            )
            c["pending"] -= cur.rowcount
            c["rejected"] += cur.rowcount
            return cur.rowcount

        return self._transaction(body)

    def prune(self, now_ns: int | None = None) -> int:
        """Delete forwarded points older than ``retention_days``; returns how many."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.cfg.retention_days * 86400e9)
        self._last_prune = time.monotonic()

        def body(con: sqlite3.Connection, c: dict[str, int]) -> int:
            cur = con.execute(
                "DELETE FROM points WHERE id IN (SELECT id FROM points "
                "WHERE time_ns < ? AND state != 0 LIMIT ?)",
                (cutoff, _PRUNE_CHUNK),
            )
            c["rows"] -= cur.rowcount
            return cur.rowcount

        total = 0
        while True:
            n = self._transaction(body)
            total += n
            if n < _PRUNE_CHUNK:
                break
        old = (now_ns - int(ROLLUP_DAYS * 86400e9)) // ROLLUP_NS
        self._transaction(lambda con, c: con.execute("DELETE FROM rollup WHERE minute < ?", (old,)))
        if total:
            log.info("store %s: pruned %d forwarded points past retention", self.path, total)
        return total

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only ``SELECT`` on the reader connection (never blocks appends)."""
        try:
            with self._rlock:
                return self._r.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise self._fail("read failed", e) from None

    def stats(self) -> SpoolStats:
        """Current counters, read from the file (exact across restarts and processes)."""
        with self._rlock:
            c = self._read_meta(self._r)
            row = self._r.execute(
                "SELECT time_ns FROM points WHERE state = 0 ORDER BY id LIMIT 1"
            ).fetchone()
        size = sum(q.stat().st_size for q in (self.path, Path(f"{self.path}-wal")) if q.exists())
        return SpoolStats(
            path=str(self.path),
            rows=c["rows"],
            pending=c["pending"],
            dropped=c["dropped"],
            rejected=c["rejected"],
            oldest_pending_ns=row[0] if row else None,
            size_bytes=size,
        )

    def close(self) -> None:
        """Close both connections (idempotent)."""
        with self._wlock:
            if self._w is not None:
                self._w.close()
                self._w = None
        r = getattr(self, "_r", None)
        if r is not None:
            with self._rlock:
                r.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
