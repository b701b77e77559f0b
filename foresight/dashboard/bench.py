"""``foresight bench dashboard``: how fast the dashboard reads its trend from weeks of history.

A local store is filled with ``--days`` of residual points at the model's 10 Hz (score, instant
and four horizons per point, as the monitor writes them), then the dashboard's own read
(``foresight.dashboard.data.trend``, 600 buckets) is timed over windows from an hour to the whole
history, against the baseline of the same read forced to scan the points (a tag filter bypasses
the per-minute rollups). Each read is timed on a store opened read-only, as the dashboard opens
it, best of three.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from foresight.bench.report import section, write_section
from foresight.dashboard.data import trend
from foresight.store import Point, Store, StoreConfig

RATE_HZ = 10.0
BUCKETS = 600
FIELDS = ("score", "instant", "h0.1s", "h1s", "h2s", "h3s")
TAGS = {"model": "v1"}  #: a tag filter: the read scans the points (the baseline)


def fill(path: Path, days: float, now_ns: int, progress: bool = True) -> int:
    """Write ``days`` of 10 Hz residual points ending at ``now_ns``; returns how many."""
    n = int(days * 86400 * RATE_HZ)
    step = int(1e9 / RATE_HZ)
    t0 = now_ns - n * step
    rng = np.random.default_rng(0)
    cfg = StoreConfig(path=str(path), max_points=n + 1)
    with Store.open(cfg, line="bench") as store, tqdm(total=n, disable=not progress) as bar:
        for k in range(0, n, 20_000):
            m = min(20_000, n - k)
            v = rng.gamma(4.0, 0.3, m)
            tags = {"line": "bench", "model": "v1"}
            store.write(
                [Point("residual", tags, dict.fromkeys(FIELDS, float(x)), t0 + (k + i) * step)
                 for i, x in enumerate(v)]
            )  # fmt: skip
            bar.update(m)
    return n


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_dashboard(days: float, workdir: Path, out: Path, progress: bool = True) -> str:
    """Fill a store, time the trend reads, write and return the ``dashboard`` section."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    path = workdir / "store.sqlite"
    now = time.time_ns()
    t = time.perf_counter()
    n = fill(path, days, now, progress)
    fill_s = time.perf_counter() - t
    rows = []
    windows = [w for w in (1 / 24, 1.0, 7.0, 28.0) if w <= days + 1e-9]
    with Store.open(StoreConfig(path=str(path)), readonly=True) as store:
        for w in windows:
            since = now - int(w * 86400e9)
            fast = _best(lambda s=since: trend(store, s, now, BUCKETS, horizons=True))
            score = _best(lambda s=since: trend(store, s, now, BUCKETS, horizons=False))
            raw = _best(
                lambda s=since: store.series("residual", "score", s, now, BUCKETS, tags=TAGS), 1
            )
            rows.append((w, score, fast, raw))
    size = path.stat().st_size / 1e9
    shutil.rmtree(workdir, ignore_errors=True)

    def fmt_w(w: float) -> str:
        return f"{w * 24:g} h" if w < 1 else f"{w:g} days"

    body = (
        f"A local store with {days:g} days of residual points at {RATE_HZ:g} Hz ({n:,} points, "
        f"{len(FIELDS)} fields each, {size:.2f} GB; written in {fill_s:.0f} s), read-only as the "
        f"dashboard opens it; {BUCKETS} buckets per read, best of three. Windows with buckets of "
        "a minute or more read the per-minute rollups; the baseline forces a scan of the points "
        "(one field).\n\n"
        "| window | trend, score (s) | trend, score + 4 horizons (s) | baseline: scan (s) |\n"
        "|---|---:|---:|---:|\n"
        + "".join(f"| {fmt_w(w)} | {a:.3f} | {b:.3f} | {c:.2f} |\n" for w, a, b, c in rows)
    )
    md = section("Dashboard: trend reads over weeks of history", body)
    write_section(out, "dashboard", md)
    return md
