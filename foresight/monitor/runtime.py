"""``foresight monitor``: the always-on process, small asyncio tasks joined by bounded queues.

Tasks and the policy of each queue between them:

- ``capture`` reads the camera (or the simulated line) and puts frames in a queue of
  ``monitor.frame_queue`` slots; when full it **drops the oldest** frame and counts it (freshness
  beats completeness: a stale frame is worth nothing to a line running at 2 cartons/s);
- ``model`` takes frames at the model's rate (ticks it cannot serve are skipped and counted) and
  runs ``Pipeline.step`` in its own worker thread, so XLA never blocks the event loop;
- commands go to the PLC through a **one-slot, latest-wins cell**: a newer command replaces one
  not yet sent (only the latest limit matters) and every replacement is counted, never silent;
- ``plc`` sends the heartbeat on a fixed schedule, applies commands (typed write, read-back,
  guards in ``foresight.plc``), reads the plant's tags and mirrors the alarm state;
- ``telemetry`` moves points to the durable store (SQLite, forwarded to InfluxDB when one is
  configured) from a queue of ``monitor.telemetry_queue`` points; if that ever fills, the newest
  points are dropped and counted (the store's own bound covers long database outages);
- ``health`` rewrites ``monitor.health_file`` every second for a supervisor.

On shutdown (SIGINT, SIGTERM, end of a file, ``monitor.duration_s``) the PLC's limit is restored to
100 %, the store is flushed, and the PLC simulator (embedded default) is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foresight.config import Config
from foresight.monitor.sources import Observation
from foresight.pipeline import Pipeline, StepOutput
from foresight.plc import alarm_code

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """What the monitor did; written to the health file and returned at the end."""

    frames: int = 0
    dropped_frames: int = 0
    steps: int = 0
    skipped_ticks: int = 0
    alarms: int = 0
    commands: int = 0
    commands_replaced: int = 0
    commands_confirmed: int = 0
    plc_failures: int = 0
    heartbeats: int = 0
    telemetry_dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # frame captured -> PLC confirmed


class Latest:
    """One-slot, latest-wins cell (``put`` never blocks; ``get`` waits for a value)."""

    def __init__(self) -> None:
        self.value: Any = None
        self._event = asyncio.Event()
        self.replaced = 0

    def put(self, value: Any) -> None:
        """Store ``value``, replacing one not yet taken."""
        if self._event.is_set():
            self.replaced += 1
        self.value = value
        self._event.set()

    async def get(self) -> Any:
        """The latest value, waiting for one."""
        await self._event.wait()
        self._event.clear()
        return self.value


class Monitor:
    """The running monitor: pipeline, PLC actuator, store and a source of observations."""

    def __init__(self, cfg: Config, pipeline: Pipeline, actuator: Any, store: Any, source: Any):
        self.cfg, self.pipe, self.act, self.store, self.source = (
            cfg,
            pipeline,
            actuator,
            store,
            source,
        )
        self.counters = Counters()
        self.frames: asyncio.Queue[tuple[Observation, float]] = asyncio.Queue(
            cfg.monitor.frame_queue
        )
        self.telemetry: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(cfg.monitor.telemetry_queue)
        self.commands = Latest()
        self.inputs = None  # last PlcInputs
        self.last: StepOutput | None = None
        self.model_name = str(pipeline.bundle.card.get("created", "model"))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="foresight-model")
        self._next_tick = 0.0

    async def run(self, stop: asyncio.Event) -> Counters:
        """Run every task until ``stop`` is set or the source ends; then shut down cleanly."""
        tasks = [
            asyncio.create_task(self._capture(stop), name="capture"),
            asyncio.create_task(self._model(), name="model"),
            asyncio.create_task(self._plc(), name="plc"),
            asyncio.create_task(self._telemetry(), name="telemetry"),
            asyncio.create_task(self._health(), name="health"),
        ]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        finally:
            for t in [waiter, *tasks]:
                t.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)
            await self._shutdown()
        return self.counters

    async def _capture(self, stop: asyncio.Event) -> None:
        async for obs in self.source:
            self.counters.frames += 1
            if self.frames.full():
                self.frames.get_nowait()
                self.counters.dropped_frames += 1
            self.frames.put_nowait((obs, time.monotonic()))
        log.info("source ended")
        while not self.frames.empty():
            await asyncio.sleep(0.01)
        stop.set()

    def _running(self, obs: Observation) -> bool | None:
        inp = self.inputs
        if inp is not None and inp.ok and inp.line_state is not None:
            return inp.running
        if obs.line_state is not None:
            return obs.line_state == "running"
        return None

    async def _model(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.pipe.fps
        while True:
            obs, captured = await self.frames.get()
            if obs.t + 1e-9 < self._next_tick:
                continue  # between model ticks
            late = int((obs.t - self._next_tick) / period)
            self.counters.skipped_ticks += max(late, 0)
            self._next_tick = max(self._next_tick + period, obs.t + period - 1e-9)
            running = self._running(obs)
            out = await loop.run_in_executor(
                self._executor, self.pipe.step, obs.frame, obs.sensors, obs.t, running
            )
            self.counters.steps += 1
            if out.alarm and not (self.last is not None and self.last.alarm):
                self.counters.alarms += 1
            for cmd in out.commands:
                self.commands.put((cmd, captured, out.state))
            self.last = out
            self._emit("step", {"out": out})

    def _emit(self, kind: str, payload: dict) -> None:
        try:
            self.telemetry.put_nowait((kind, payload))
        except asyncio.QueueFull:
            self.counters.telemetry_dropped += 1

    async def _plc(self) -> None:
        hb = self.cfg.plc.heartbeat_s
        next_beat = time.monotonic()
        mode = None
        while True:
            timeout = max(next_beat - time.monotonic(), 0.0)
            item = None
            with contextlib.suppress(TimeoutError):
                item = await asyncio.wait_for(self.commands.get(), timeout)
            if item is not None:
                await self._apply(*item)
            if time.monotonic() >= next_beat:
                next_beat += hb
                self.counters.heartbeats += int(await self.act.heartbeat())
                self.inputs = await self.act.read_inputs()
                state = self.last.state if self.last is not None else "normal"
                if state != mode:
                    if await self.act.set_alarm_state(alarm_code(state)):
                        mode = state

    async def _apply(self, cmd, captured: float, state: str) -> None:
        self.counters.commands += 1
        self.counters.commands_replaced = self.commands.replaced
        applied = await self.act.apply(cmd.speed_limit_pct)
        if applied.confirmed:
            self.counters.commands_confirmed += 1
            self.counters.latencies_ms.append((time.monotonic() - captured) * 1000)
        elif applied.reason not in ("hold", "dry_run"):
            self.counters.plc_failures += 1
            log.warning(
                "PLC command %.0f %% not confirmed: %s", cmd.speed_limit_pct, applied.reason
            )
        self._emit("command", {"cmd": cmd, "applied": applied})

    async def _telemetry(self) -> None:
        while True:
            batch = [await self.telemetry.get()]
            while not self.telemetry.empty() and len(batch) < 500:
                batch.append(self.telemetry.get_nowait())
            await asyncio.to_thread(self._write, batch)

    def _write(self, batch: list[tuple[str, dict]]) -> None:
        """Store writes (runs in a worker thread)."""
        for kind, p in batch:
            if kind == "step":
                out: StepOutput = p["out"]
                hz = dict(zip(self.pipe.horizons, map(float, out.horizons), strict=False))
                self.store.write_residual(self.model_name, out.score, out.instant, hz)
                self.store.write_alarm(self.model_name, out.state, out.alarm, out.speed_limit)
                if out.health:
                    self.store.write_health(out.health, 1, self.counters.dropped_frames)
            elif kind == "command":
                a = p["applied"]
                self.store.write_command(p["cmd"].reason, a.requested, a.read_back, a.confirmed)

    async def _health(self) -> None:
        path = Path(self.cfg.monitor.health_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            self.write_health(path)
            await asyncio.sleep(1.0)

    def write_health(self, path: Path) -> None:
        """Atomically rewrite the health file."""
        last = self.last
        doc = {
            "time": time.time(),
            "state": last.state if last else "starting",
            "health": last.health if last else None,
            "score": last.score if last and np.isfinite(last.score) else None,
            "model": self.model_name,
            "plc_ok": bool(self.inputs.ok) if self.inputs is not None else None,
            "counters": {k: v for k, v in asdict(self.counters).items() if k != "latencies_ms"},
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc) + "\n")
        os.replace(tmp, path)

    async def _shutdown(self) -> None:
        """Restore the PLC's speed, flush the store, stop the model thread."""
        with contextlib.suppress(Exception):
            applied = await asyncio.wait_for(self.act.apply(100.0), 5.0)
            log.info("speed limit restored to 100 %% (confirmed: %s)", applied.confirmed)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.act.set_alarm_state(0), 2.0)
        with contextlib.suppress(Exception):
            await self.act.close()
        while not self.telemetry.empty():
            self._write([self.telemetry.get_nowait()])
        self.write_health(Path(self.cfg.monitor.health_file))
        self._executor.shutdown(wait=True)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
