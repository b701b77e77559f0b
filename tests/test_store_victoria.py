"""Spool + Forwarder against a real VictoriaMetrics server (InfluxDB v2 write API)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import victoria

from foresight.store import Forwarder, InfluxConfig, Point, Spool, Store, StoreConfig


@pytest.fixture(scope="module")
def vm_exe() -> str:
    """The victoria-metrics binary (installed once from Debian if missing), else skip."""
    try:
        return victoria.binary()
    except victoria.Unavailable as e:
        pytest.skip(f"no VictoriaMetrics server: {e}")


@pytest.fixture
def vm(vm_exe: str, tmp_path: Path) -> Iterator[victoria.Victoria]:
    """A fresh server on a free loopback port with its own data."""
    with victoria.Victoria(vm_exe, tmp_path / "vm") as server:
        yield server


def _influx(url: str, **kw: float) -> InfluxConfig:
    return InfluxConfig(url=url, retry_min_s=0.05, retry_max_s=0.3, flush_interval_s=0.05, **kw)


def _points(n: int, t0: int, step_ns: int = 20_000_000, tag: str = "a") -> list[Point]:
    return [
        Point("residual", {"line": "l1", "model": tag}, {"score": float(i)}, t0 + i * step_ns)
        for i in range(n)
    ]


def _times(vm: victoria.Victoria, expect: int, model: str = "a") -> list[int]:
    series = vm.samples(f'residual_score{{model="{model}"}}', expect)
    return sorted(t for s in series for t in s["timestamps"])


def test_points_arrive_with_tags(vm: victoria.Victoria, tmp_path: Path) -> None:
    t = time.time_ns() - 5_000_000_000
    cfg = StoreConfig(path=str(tmp_path / "s.sqlite"))
    with Store.open(cfg, _influx(vm.url), line="l1") as store:
        store.write_residual("m7", 1.5, 0.25, {0.1: 2.0, 1.0: 3.0}, {"belt_speed": -0.5}, t)
        store.write_alarm("m7", "slowdown", True, 60.0, t + 1_000_000)
        store.write_command("slowdown", 60.0, 60.0, True, t + 2_000_000)
        store.write_health("ok", 0, 3, t + 3_000_000)
        store.write_drift("lighting", 4.5, t + 4_000_000)
        assert store.forwarder is not None and store.forwarder.flush(10)
        stats = store.forwarder.stats()
        assert (stats.sent, stats.pending, stats.failed_attempts) == (5, 0, 0)
    got = {
        s["metric"]["__name__"]: (s["metric"], s["values"], s["timestamps"])
        for s in vm.samples('{__name__=~"(residual|alarm|command|health|drift)_.*"}', 15)
    }
    ms = t // 1_000_000
    labels = {"__name__": "residual_score", "line": "l1", "model": "m7"}
    assert got["residual_score"] == (labels, [1.5], [ms])
    assert got["residual_h0.1s"][1] == [2.0] and got["residual_z_belt_speed"][1] == [-0.5]
    assert got["alarm_code"][0]["state"] == "slowdown" and got["alarm_code"][1] == [2.0]
    assert got["alarm_alarm"][1] == [1.0] and got["alarm_speed_limit_pct"][2] == [ms + 1]
    assert got["command_confirmed"][0]["reason"] == "slowdown"
    assert got["health_dropped_frames"][1] == [3.0]
    assert got["drift_detected"][0]["kind"] == "lighting"
    assert len(got) == 15  # every numeric field of every point, no string fields


def test_outage_loses_nothing(vm: victoria.Victoria, tmp_path: Path) -> None:
    """A 60 s outage's worth of points (3000 at 50/s) is delivered once the server is back."""
    t0 = time.time_ns() - 120_000_000_000
    before, during = _points(100, t0), _points(3000, t0 + 2_000_000_000)
    spool = Spool(StoreConfig(path=str(tmp_path / "s.sqlite")))
    with Forwarder(spool, _influx(vm.url)) as fwd:
        spool.append(before)
        assert fwd.flush(10)
        vm.stop()
        for i in range(0, len(during), 50):  # one append per "second" of the outage
            spool.append(during[i : i + 50])
        time.sleep(0.5)
        s = fwd.stats()
        assert s.pending == len(during) and s.failed_attempts >= 1 and s.last_error
        assert s.lag_s > 100
        vm.start()
        start = time.monotonic()
        assert fwd.flush(20), fwd.stats()
        catch_up = time.monotonic() - start
        assert fwd.stats().sent == len(before) + len(during)
    spool.close()
    expected = sorted(p.time_ns // 1_000_000 for p in before + during)
    got = _times(vm, len(expected))
    assert sorted(set(got)) == expected  # all delivered (at least once)
    assert catch_up < 10, f"catch-up took {catch_up:.1f} s"


def test_restart_resumes_unacked(vm: victoria.Victoria, tmp_path: Path) -> None:
    """A new Spool + Forwarder on the same file sends exactly the points the old one had not."""
    t0 = time.time_ns() - 60_000_000_000
    path = str(tmp_path / "s.sqlite")
    first, second = _points(40, t0), _points(60, t0 + 1_000_000_000)
    spool = Spool(StoreConfig(path=path))
    with Forwarder(spool, _influx(vm.url)) as fwd:
        spool.append(first)
        assert fwd.flush(10)
    spool.append(second)  # forwarder gone: the "process" exits before sending these
    spool.close()

    spool = Spool(StoreConfig(path=path))
    assert spool.stats().pending == len(second)
    with Forwarder(spool, _influx(vm.url)) as fwd:
        assert fwd.flush(10)
        assert fwd.stats().sent == len(second)
    assert spool.stats().pending == 0 and spool.stats().rows == 100
    spool.close()
    got = _times(vm, 100)
    assert got == sorted(p.time_ns // 1_000_000 for p in first + second)  # none twice


def test_bound_drops_oldest_and_counts(
    vm: victoria.Victoria, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past max_points (server down) the oldest unforwarded points go, counted and logged."""
    t0 = time.time_ns() - 60_000_000_000
    cfg = StoreConfig(path=str(tmp_path / "s.sqlite"), max_points=100)
    pts = _points(150, t0)
    vm.stop()
    spool = Spool(cfg)
    with caplog.at_level(logging.WARNING, logger="foresight.store.spool"):
        for i in range(0, 150, 10):
            spool.append(pts[i : i + 10])
    assert "dropped 10 unforwarded points" in caplog.text
    s = spool.stats()
    assert (s.rows, s.pending, s.dropped) == (100, 100, 50)
    spool.close()
    vm.start()
    spool = Spool(cfg)
    assert spool.stats().dropped == 50  # the count survives a restart
    with Forwarder(spool, _influx(vm.url)) as fwd:
        assert fwd.flush(10)
    spool.close()
    assert _times(vm, 100) == [p.time_ns // 1_000_000 for p in pts[50:]]
