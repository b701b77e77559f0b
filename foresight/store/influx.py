"""Forward spooled points to an InfluxDB v2 write API (InfluxDB 2.x or VictoriaMetrics).

``Forwarder`` is a background **thread**, not an asyncio task: influxdb-client's write API and
sqlite3 both block, and a thread keeps them off the event loop that runs the PLC path (the
async client would also need aiohttp). It reads the oldest ``batch_size`` unforwarded points,
writes them as line protocol at ns precision with the synchronous write API, and ``ack``\\ s
them only after the server answered 2xx: delivery is at least once, never lost. On an
unreachable server, a timeout, 401/403/404, 429 or 5xx it backs off (``retry_min_s`` doubling
to ``retry_max_s``, or the server's Retry-After) and retries the same points. On 400/413/422
it halves the batch until the refused point is alone, then marks that one point rejected
(kept locally, counted, logged) so one bad point cannot block the spool.

Every field is written as a float (bools as 0/1): InfluxDB then never sees a field-type
conflict, and VictoriaMetrics (which drops string fields and stores ms timestamps) keeps all of
them as ``<measurement>_<field>`` series. States, reasons and versions are tags.

Measurements (tags | fields):

* ``residual``: line, model | score, instant, ``h<H>s`` per forecast horizon (``h0.1s``, ...),
  ``z_<sensor>`` per-sensor residual z
* ``alarm``: line, model, state | code (index in ``foresight.alarms.engine.MODES``), alarm
  (0/1), speed_limit_pct
* ``command``: line, reason | requested_pct, applied_pct, confirmed (0/1)
* ``health``: line, reason | code, dropped_frames
* ``drift``: line, kind | statistic, detected (1)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client import Point as LinePoint
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

from foresight.store.config import InfluxConfig
from foresight.store.spool import Point, Spool, StoreError

log = logging.getLogger(__name__)

_SPLIT = frozenset({400, 413, 422})  # the request itself is refused: isolate the bad point


@dataclass(frozen=True)
class ForwarderStats:
    """Counters of a forwarder at one moment."""

    sent: int  #: points the server accepted since start
    failed_attempts: int  #: write requests that failed (each retried later)
    rejected: int  #: points refused as malformed since start (kept locally)
    last_error: str  #: text of the latest failure ("" when none yet)
    last_success_ns: int | None  #: wall time of the latest accepted write
    pending: int  #: points in the spool still to forward
    lag_s: float  #: age of the oldest unforwarded point (0 when none)
    backoff_s: float  #: current wait before the next retry (0 when healthy)
    alive: bool  #: the thread is running


def to_line(p: Point) -> str:
    """Line protocol of ``p`` (fields as floats, ns time); "" when it has no fields."""
    lp = LinePoint(p.measurement).time(p.time_ns, WritePrecision.NS)
    for k, v in p.tags.items():
        lp.tag(k, v)
    for k, v in p.fields.items():
        lp.field(k, float(v))
    return lp.to_line_protocol()


class Forwarder:
    """Background thread moving spooled points to InfluxDB; counters via ``stats()``."""

    def __init__(self, spool: Spool, cfg: InfluxConfig) -> None:
        if cfg.url is None:
            raise StoreError("influx.url is not set: nothing to forward to (local store only)")
        self.spool, self.cfg = spool, cfg
        token = cfg.token.get_secret_value() if cfg.token is not None else None
        self._client = InfluxDBClient(
            url=cfg.url, token=token, org=cfg.org, timeout=int(cfg.timeout_s * 1000)
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._limit = cfg.batch_size
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = self.failed_attempts = self.rejected = 0
        self.last_error = ""
        self.last_success_ns: int | None = None
        self.backoff_s = 0.0

    def start(self) -> Forwarder:
        """Start the thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="foresight-forwarder")
            self._thread.daemon = True
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; unforwarded points stay in the spool for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def close(self) -> None:
        """Stop and release the HTTP client."""
        self.stop()
        self._client.close()

    def poke(self) -> None:
        """Look for new points now instead of at the next ``flush_interval_s``."""
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the spool has nothing pending; False on timeout."""
        end = time.monotonic() + timeout
        while self.spool.stats().pending:
            if time.monotonic() >= end:
                return False
            self.poke()
            time.sleep(0.02)
        return True

    def stats(self) -> ForwarderStats:
        """Counters, pending count and lag."""
        s = self.spool.stats()
        lag = 0.0 if s.oldest_pending_ns is None else (time.time_ns() - s.oldest_pending_ns) / 1e9
        alive = self._thread is not None and self._thread.is_alive()
        return ForwarderStats(
            sent=self.sent,
            failed_attempts=self.failed_attempts,
            rejected=self.rejected,
            last_error=self.last_error,
            last_success_ns=self.last_success_ns,
            pending=s.pending,
            lag_s=max(0.0, lag),
            backoff_s=self.backoff_s,
            alive=alive,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                full = self.step()
            except Exception as e:  # a telemetry thread must not die silently: log, back off
                log.exception("forwarder step failed; retrying after back-off")
                self._failed(f"{type(e).__name__}: {e}", None)
                full = False
            if self.backoff_s > 0:
                self._stop.wait(self.backoff_s)
            elif not full:
                self._wake.wait(self.cfg.flush_interval_s)
                self._wake.clear()

    def step(self) -> bool:
        """Send one batch; True when a full batch went out (more may be waiting)."""
        batch = self.spool.pending(self._limit)
        if not batch:
            return False
        lines = [line for line in (to_line(p) for _, p in batch) if line]
        try:
            if lines:
                self._api.write(
                    self.cfg.bucket, self.cfg.org, lines, write_precision=WritePrecision.NS
                )
        except InfluxDBError as e:
            status = getattr(e, "status", None)
            if status in _SPLIT:
                return self._refused(batch, f"HTTP {status}: {e.message}")
            self._failed(f"HTTP {status}: {e.message}", e.retry_after)
            return False
        except (urllib3.exceptions.HTTPError, OSError) as e:
            self._failed(f"{type(e).__name__}: {e}", None)
            return False
        self.spool.ack(batch[-1][0])
        self.sent += len(batch)
        self.last_success_ns = time.time_ns()
        if self.backoff_s > 0:
            log.info("forwarding to %s resumed after: %s", self.cfg.url, self.last_error)
        self.backoff_s = 0.0
        full = len(batch) >= self._limit
        self._limit = min(self.cfg.batch_size, self._limit * 2)
        return full

    def _refused(self, batch: list[tuple[int, Point]], why: str) -> bool:
        self.failed_attempts += 1
        self.last_error = why
        if len(batch) > 1:  # find the bad point: halve and retry at once
            self._limit = max(1, len(batch) // 2)
            return True
        self.spool.reject([batch[0][0]])
        self.rejected += 1
        log.error("server refused point %s (%s); kept locally, not resent", batch[0][1], why)
        return True

    def _failed(self, why: str, retry_after: str | None) -> None:
        self.failed_attempts += 1
        if why != self.last_error:
            log.warning("forwarding to %s failed, will retry: %s", self.cfg.url, why)
        self.last_error = why
        wait = min(self.cfg.retry_max_s, max(self.cfg.retry_min_s, 2 * self.backoff_s))
        try:
            wait = min(self.cfg.retry_max_s, max(wait, float(retry_after or 0)))
        except ValueError:  # an HTTP date: ignore it
            pass
        self.backoff_s = wait

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
