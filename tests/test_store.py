"""Unit tests of the local store: spool durability, ack, bounds, bad paths, reads, forwarding."""

from __future__ import annotations

import http.server
import logging
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from foresight.store import (
    Forwarder,
    InfluxConfig,
    Point,
    Spool,
    Store,
    StoreConfig,
    StoreError,
    to_line,
)

DAY = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9


def _cfg(tmp_path: Path, **kw: object) -> StoreConfig:
    return StoreConfig(path=str(tmp_path / "store" / "s.sqlite"), **kw)


def _pts(n: int, t0: int = T0, step: int = 10**6, start: int = 0) -> list[Point]:
    return [Point("m", {"k": "v"}, {"x": float(start + i)}, t0 + i * step) for i in range(n)]


def test_points_survive_reopen_with_their_types(tmp_path: Path) -> None:
    p = Point("residual", {"line": "l 1", "model": "a=b"}, {"f": 1.5, "i": 7, "b": True}, T0)
    with Spool(_cfg(tmp_path)) as spool:
        spool.append([p, Point("m", {}, {"nan": math.nan, "y": 2.0}, T0 + 1)])
    with Spool(_cfg(tmp_path)) as spool:
        got = [q for _, q in spool.pending(10)]
        assert got == [p, Point("m", {}, {"y": 2.0}, T0 + 1)]  # NaN = no value
        assert type(got[0].fields["i"]) is int and got[0].fields["b"] is True
        assert spool.stats().rows == 2 and spool.stats().pending == 2


def test_points_survive_a_killed_process(tmp_path: Path) -> None:
    """Every append that returned is on disk even if the process dies with SIGKILL."""
    code = (
        "import sys, os, signal\n"
        "from foresight.store import Spool, StoreConfig, Point\n"
        f"s = Spool(StoreConfig(path={str(tmp_path / 'k.sqlite')!r}))\n"
        "for i in range(20):\n"
        "    s.append([Point('m', {}, {'x': float(i * 10 + j)}, i * 10 + j) for j in range(10)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == -9
    with Spool(StoreConfig(path=str(tmp_path / "k.sqlite"))) as spool:
        assert [p.time_ns for _, p in spool.pending(1000)] == list(range(200))
        assert spool.stats().pending == 200


def test_append_is_all_or_nothing(tmp_path: Path) -> None:
    with Spool(_cfg(tmp_path, max_points=5)) as spool:
        spool.append(_pts(4))
        spool.ack(spool.pending(1)[0][0])
        with pytest.raises(ValueError, match="must be a number"):
            spool.append([*_pts(2), Point("m", {}, {"s": "text"}, T0)])  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="int64"):
            spool.append([Point("m", {}, {"x": 1.0}, 2**70)])
        with sqlite3.connect(spool.path) as con:  # make the 3rd insert fail mid-transaction
            con.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON points WHEN NEW.time_ns = 42 "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        with pytest.raises(StoreError, match="write failed: boom"):
            spool.append([*_pts(2), Point("m", {}, {"x": 1.0}, 42)])  # evicts, then fails
        s = spool.stats()
        assert (s.rows, s.pending, s.dropped) == (4, 3, 0)
        assert [p.fields["x"] for p in Store(spool).query("m", 0, T0 + DAY)] == [0, 1, 2, 3]


def test_ack_marks_a_prefix_and_keeps_history(tmp_path: Path) -> None:
    with Spool(_cfg(tmp_path)) as spool:
        spool.append(_pts(10))
        batch = spool.pending(4)
        assert [p.fields["x"] for _, p in batch] == [0.0, 1.0, 2.0, 3.0]
        assert spool.ack(batch[-1][0]) == 4 and spool.ack(batch[-1][0]) == 0
        assert [p.fields["x"] for _, p in spool.pending(2)] == [4.0, 5.0]
    with Spool(_cfg(tmp_path)) as spool:
        s = spool.stats()
        assert (s.rows, s.pending, s.oldest_pending_ns) == (10, 6, T0 + 4 * 10**6)
        assert len(Store(spool).query("m", T0, T0 + DAY)) == 10  # forwarded stay readable


def test_retention_prunes_only_forwarded(tmp_path: Path) -> None:
    with Spool(_cfg(tmp_path, retention_days=7)) as spool:
        spool.append(_pts(4, t0=T0 - 8 * DAY) + _pts(4, t0=T0, start=4))
        spool.ack(spool.pending(2)[-1][0])  # 2 old points forwarded, 2 old + 4 new pending
        assert spool.prune(now_ns=T0) == 2
        assert (spool.stats().rows, spool.stats().pending) == (6, 6)
        spool.ack(spool.pending(10)[-1][0])  # all forwarded: only the old ones go
        assert spool.prune(now_ns=T0) == 2
        assert [p.fields["x"] for p in Store(spool).query("m", 0, T0 + DAY)] == [4, 5, 6, 7]
        assert spool.stats().rows == 4


def test_unforwarded_points_outlive_retention(tmp_path: Path) -> None:
    with Spool(_cfg(tmp_path, retention_days=7)) as spool:
        spool.append(_pts(3, t0=T0 - 30 * DAY))
        assert spool.prune(now_ns=T0) == 0 and spool.stats().pending == 3


def test_bound_evicts_forwarded_first_then_counts_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Spool(_cfg(tmp_path, max_points=10)) as spool:
        spool.append(_pts(6))
        spool.ack(spool.pending(6)[-1][0])
        spool.append(_pts(6, start=6))  # 2 forwarded go, nothing dropped
        assert (spool.stats().rows, spool.stats().dropped) == (10, 0)
        with caplog.at_level(logging.WARNING, logger="foresight.store.spool"):
            spool.append(_pts(8, start=12))  # 4 forwarded go, then the 4 oldest pending
        assert "dropped 4 unforwarded points" in caplog.text
        assert [p.fields["x"] for _, p in spool.pending(100)] == [float(x) for x in range(10, 20)]
        spool.append(_pts(13, start=20))  # a batch larger than the bound keeps its newest
        assert [p.fields["x"] for _, p in spool.pending(100)][0] == 23.0
    with Spool(_cfg(tmp_path, max_points=10)) as spool:
        s = spool.stats()
        assert (s.rows, s.pending, s.dropped) == (10, 10, 4 + 10 + 3)


def test_bad_paths_raise_one_line_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(os.urandom(8192))
    cases = [
        (blocker / "s.sqlite", "cannot create its directory"),
        (tmp_path, "is a directory"),
        (corrupt, "not a usable Foresight SQLite store"),
    ]
    for path, what in cases:
        with pytest.raises(StoreError) as err:
            Spool(StoreConfig(path=str(path)))
        assert str(path) in str(err.value) and what in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="no such file"):
        Spool(StoreConfig(path=str(tmp_path / "none.sqlite")), readonly=True)


def test_unwritable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permissions; /proc refuses new files to all
        locked = Path("/proc")
        if not locked.is_dir():
            pytest.skip("running as root without /proc: no unwritable directory to try")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    with pytest.raises(StoreError, match="is its directory writable") as err:
        Spool(StoreConfig(path=str(locked / "s.sqlite")))
    assert str(locked / "s.sqlite") in str(err.value)


def test_query_series_and_events(tmp_path: Path) -> None:
    with Store.open(_cfg(tmp_path), line="l1") as store:
        for i in range(1000):  # 10 s at 100 Hz, score = i, one spike
            t = T0 + i * 10**7
            store.write_residual("a", 1e6 if i == 333 else float(i), 0.0, {0.5: i / 2}, None, t)
        store.write_alarm("a", "watch", False, 100.0, T0 + 5)
        store.write_command("slowdown", 60.0, None, False, T0 + 3)
        store.write([Point("residual", {"line": "l2", "model": "b"}, {"score": -1.0}, T0)])

        assert len(store.query("residual", T0, T0 + 10**10)) == 1001
        q = store.query("residual", T0, T0 + 10**8, tags={"line": "l1"}, limit=5)
        assert [p.fields["score"] for p in q] == [0.0, 1.0, 2.0, 3.0, 4.0]
        s = store.series("residual", "score", T0, T0 + 10**10, 10, tags={"model": "a"})
        assert len(s.time_ns) == 10 and s.count.tolist() == [100] * 10
        assert s.time_ns[0] == T0 + 5 * 10**8 and s.min[3] == 300 and s.max[3] == 1e6
        np.testing.assert_allclose(s.mean[[0, 9]], [49.5, 949.5])
        h = store.series("residual", "h0.5s", T0, T0 + 10**10, 2)
        np.testing.assert_allclose(h.mean, [124.75, 374.75])
        assert len(store.series("residual", "missing", T0, T0 + 1, 5).mean) == 0
        events = store.events(T0, T0 + 10**10)
        assert [(e.measurement, e.tags.get("state")) for e in events] == [
            ("command", None),
            ("alarm", "watch"),
        ]
        assert "applied_pct" not in events[0].fields  # unknown read-back is no value
        assert store.latest("residual", {"model": "a"}).fields["score"] == 999.0  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="unknown alarm state"):
            store.write_alarm("a", "panic", True, 0.0)
    with Store.open(_cfg(tmp_path), readonly=True) as ro:
        assert len(ro.events(T0, T0 + 10**10)) == 2
        with pytest.raises(StoreError, match="read-only"):
            ro.write(_pts(1))


def test_line_protocol() -> None:
    p = Point("residual", {"line": "l 1", "model": "m,1"}, {"score": 2, "ok": True}, 123)
    assert to_line(p) == r"residual,line=l\ 1,model=m\,1 ok=1,score=2 123"
    assert to_line(Point("m", {}, {"x": math.nan}, 1)) == ""


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retry_max_s"):
        InfluxConfig(retry_min_s=5, retry_max_s=1)
    with pytest.raises(StoreError, match="influx.url is not set"):
        Forwarder(Spool(_cfg(tmp_path)), InfluxConfig())


class _Fake(http.server.BaseHTTPRequestHandler):
    """InfluxDB stand-in: 503 while ``down``, 400 for a body with 'poison', else 204."""

    down = 0
    bodies: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        if _Fake.down > 0:
            _Fake.down -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
        elif "poison" in body:
            self.send_response(400)
        else:
            _Fake.bodies.append(body)
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    """A fake write endpoint on a free loopback port."""
    _Fake.down, _Fake.bodies = 0, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_forwarder_isolates_a_refused_point_and_backs_off(tmp_path: Path, fake: str) -> None:
    spool = Spool(_cfg(tmp_path))
    pts = _pts(20)
    pts[13] = Point("m", {"k": "poison"}, {"x": 13.0}, pts[13].time_ns)
    spool.append(pts)
    _Fake.down = 2
    cfg = InfluxConfig(url=fake, batch_size=8, retry_min_s=0.01, retry_max_s=0.05)
    with Forwarder(spool, cfg) as fwd:
        assert fwd.flush(10)
        s = fwd.stats()
    assert (s.sent, s.rejected, spool.stats().rejected) == (19, 1, 1)
    assert s.failed_attempts >= 2 + 3 and "HTTP 400" in s.last_error  # 2 x 503, 3 halvings
    sent = sorted(int(line.split()[-1]) for b in _Fake.bodies for line in b.splitlines())
    assert sent == [p.time_ns for i, p in enumerate(pts) if i != 13]
    assert len(Store(spool).query("m", T0, T0 + DAY)) == 20  # refused point kept locally
    spool.close()


def test_long_windows_come_from_per_minute_rollups(tmp_path: Path) -> None:
    """Weeks of history draw from per-minute rollups (same means, spikes kept), also for points
    written before rollups existed (backfilled when a writer opens the store)."""
    t0 = (time.time_ns() - 7 * 3600 * 10**9) // (60 * 10**9) * (60 * 10**9)  # a whole minute
    rng = np.random.default_rng(0)
    vals = rng.normal(1.0, 0.3, 6 * 3600)  # 6 h at 1 Hz
    vals[7777] = 50.0
    with Store.open(_cfg(tmp_path), line="l1") as store:
        for k in range(0, len(vals), 600):
            pts = [Point("residual", {"model": "a"}, {"score": float(v)}, t0 + (k + i) * 10**9)
                   for i, v in enumerate(vals[k : k + 600])]  # fmt: skip
            store.write(pts)
        rolled = store.series("residual", "score", t0, t0 + 6 * 3600 * 10**9, 36)  # 10-min buckets
        exact = store.series(
            "residual", "score", t0, t0 + 6 * 3600 * 10**9, 36, tags={"model": "a"}
        )
        n_rollup = store.spool.read("SELECT count(*) FROM rollup")[0][0]
    assert n_rollup == 6 * 60  # one row per minute for the one numeric field
    np.testing.assert_allclose(rolled.mean, exact.mean, rtol=1e-9)
    assert rolled.count.tolist() == [600] * 36 and rolled.max.max() == 50.0
    np.testing.assert_array_equal(rolled.time_ns, exact.time_ns)
    # A store from before rollups: drop them, reopen as a writer: backfilled from the points.
    con = sqlite3.connect(tmp_path / "store" / "s.sqlite")
    con.execute("DELETE FROM rollup")
    con.execute("DELETE FROM meta WHERE key = 'rollups'")
    con.commit()
    con.close()
    with Store.open(_cfg(tmp_path), line="l1") as store:
        again = store.series("residual", "score", t0, t0 + 6 * 3600 * 10**9, 36)
    np.testing.assert_allclose(again.mean, exact.mean, rtol=1e-9)
