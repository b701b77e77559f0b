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
- ``health`` rewrites ``monitor.health_file`` every second for a supervisor, and picks up
  model-swap requests (the ``monitor.swap_request`` file, or SIGHUP);
- ``footage`` hands every step to the ``FootageKeeper`` (``foresight.monitor.footage``: rolling
  archive of normal footage for retraining, evidence clips around alarms, the dashboard's live
  frame) in its own thread, from a queue of ``monitor.footage.queue`` steps; when full the
  **newest** step is dropped and counted (the archive then ends its segment early: no gap in a
  segment).

Every step also feeds the **drift detector** (``foresight.drift``) with its residual when the step
was calm (``StepOutput.calm``: running, no slow-down, camera and sensors working); a detection
is logged, stored as a ``drift`` point and shown in the health file until a new model is swapped
in (which restarts the detector's reference).

A **camera stall** (no frame for ``monitor.stall_s``) is a model-health fault: the alarm engine
gets an unhealthy tick (its policy: any slow-down released, never one started), the health file
says ``no_frame`` and a health point is stored; a **frozen** picture is caught by the pipeline's
own health checks. A **model swap** (``Monitor.swap_model``, see ``foresight.monitor.swap``) loads
and checks the candidate in a worker thread and takes it between two frames in the model thread;
a refused candidate leaves the running model in place. Every start, swap and refusal is stored
as a ``model`` point (tags ``version``, ``event``).

On shutdown (SIGINT, SIGTERM, end of a file, ``monitor.duration_s``) the PLC's limit is restored to
100 %, the store is flushed, and the PLC simulator (embedded default) is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foresight.alarms import engine as alarms
from foresight.config import Config
from foresight.dashboard.config import paths as side_paths
from foresight.drift.changes import write_event
from foresight.drift.detector import DriftDetector
from foresight.errors import InputError
from foresight.monitor import swap
from foresight.monitor.config import archive_folder
from foresight.monitor.footage import FootageKeeper, Kept
from foresight.monitor.sdnotify import notify
from foresight.monitor.sources import Observation
from foresight.pipeline import Pipeline, StepOutput
from foresight.plc import alarm_code
from foresight.store import Point

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
    stalls: int = 0
    swaps: int = 0
    swaps_refused: int = 0
    footage_dropped: int = 0
    footage_errors: int = 0
    drift_events: int = 0
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

    def __init__(
        self,
        cfg: Config,
        pipeline: Pipeline,
        actuator: Any,
        store: Any,
        source: Any,
        model_dir: str | Path | None = None,
    ):
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
        self.model_dir = Path(model_dir) if model_dir is not None else None
        #: version of the running model (tag ``model`` of every residual and alarm point)
        self.model_name = swap.model_version(pipeline.bundle, self.model_dir)
        #: the latest swap attempt: {"time", "path", "ok", "version" or "error"}
        self.last_swap: dict[str, Any] | None = None
        self.stalled_since: float | None = None  # monotonic time of the last frame, when stalled
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="foresight-model")
        self._swap_lock = asyncio.Lock()
        self._swaps: set[asyncio.Task] = set()
        self._next_tick = 0.0
        self._last_t = 0.0  # source time of the last model step
        self._last_frame = time.monotonic()
        health = Path(cfg.monitor.health_file)
        self.swap_request = Path(cfg.monitor.swap_request or health.with_name("swap.request"))
        fcfg, side = cfg.monitor.footage, side_paths(cfg)
        self.keeper = FootageKeeper(
            fcfg, archive_folder(cfg.monitor), side.clips, side.live,
            pipeline.fps, pipeline.channels, self.model_name,
        )  # fmt: skip
        self.footage: asyncio.Queue[Kept] = asyncio.Queue(fcfg.queue)
        self._footage_executor = ThreadPoolExecutor(1, thread_name_prefix="foresight-footage")
        self._next_publish = 0.0
        self.drift = DriftDetector(cfg.drift, pipeline.channels)
        self.drift_event: dict[str, Any] | None = None

    async def run(self, stop: asyncio.Event) -> Counters:
        """Run every task until ``stop`` is set or the source ends; then shut down cleanly."""
        tasks = [
            asyncio.create_task(self._capture(stop), name="capture"),
            asyncio.create_task(self._model(), name="model"),
            asyncio.create_task(self._plc(), name="plc"),
            asyncio.create_task(self._telemetry(), name="telemetry"),
            asyncio.create_task(self._health(), name="health"),
            asyncio.create_task(self._footage(), name="footage"),
        ]
        waiter = asyncio.create_task(stop.wait())
        self._emit("model", {"event": "start", "version": self.model_name})
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_swap)
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for t in [waiter, *tasks, *self._swaps]:
                t.cancel()
            await asyncio.gather(*tasks, *self._swaps, waiter, return_exceptions=True)
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
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                async with asyncio.timeout(self.cfg.monitor.stall_s):
                    obs, captured = await self.frames.get()
            except TimeoutError:
                self._stalled()
                continue
            self._last_frame = time.monotonic()
            if self.stalled_since is not None:
                log.info("camera delivers again after %.1f s", captured - self.stalled_since)
                self.stalled_since = None
                self._emit("health", {"reason": "camera_resumed", "code": 0})
            if obs.t + 1e-9 < self._next_tick:
                continue  # between model ticks
            late = int((obs.t - self._next_tick) / period)
            self.counters.skipped_ticks += max(late, 0)
            # Ticks stay on the k / fps grid, as ingest samples footage for training: stepping
            # one period after the frame used instead ran a 25 fps camera at 8.3 model steps/s.
            self._next_tick += period * (max(late, 0) + 1)
            running = self._running(obs)
            publish = time.monotonic() >= self._next_publish
            if publish:
                self._next_publish = time.monotonic() + self.cfg.monitor.footage.publish_s
            out, expected = await loop.run_in_executor(
                self._executor, self._step, obs, running, publish
            )
            self._last_t = obs.t
            self.counters.steps += 1
            onset = out.alarm and not (self.last is not None and self.last.alarm)
            self.counters.alarms += int(onset)
            for cmd in out.commands:
                self.commands.put((cmd, captured, out.state))
            self.last = out
            self._emit("step", {"out": out, "model": self.model_name})
            self._drift(out)
            self._keep(obs, out, onset, expected)

    def _step(self, obs: Observation, running: bool | None, publish: bool):
        """One pipeline step (model thread), with the expected frame when it is to be shown."""
        out = self.pipe.step(obs.frame, obs.sensors, obs.t, running)
        return out, (self.pipe.expected() if publish else None)

    def _drift(self, out: StepOutput) -> None:
        """Feed the drift detector; a detection is logged, stored and shown until a swap."""
        ev = self.drift.update(out.residual, out.calm, out.t)
        if ev is not None:
            self.counters.drift_events += 1
            self.drift_event = ev.to_dict()
            log.warning("drift detected (%s, rise %.2f): %s", ev.kind, ev.rise, ev.advice)
            self._emit("drift", {"event": ev})
            if ev.kind == "plant_change" and self.cfg.retrain.on_drift:
                from foresight.dashboard.requests import request_retrain_after_drift

                due = ev.time_ns + int(self.cfg.retrain.on_drift_wait_hours * 3600e9)
                why = f"drift: {ev.kind}, rise {ev.rise:.2f}"
                try:
                    request_retrain_after_drift(side_paths(self.cfg).requests, ev.time_ns, due, why)
                except OSError as e:
                    log.error("retrain request after the drift not written: %s", e)

    def _keep(self, obs: Observation, out: StepOutput, onset: bool, expected) -> None:
        """Queue the step for the footage keeper (full queue: this step is dropped, counted)."""
        fcfg = self.cfg.monitor.footage
        if expected is None and not (fcfg.archive or fcfg.clips):
            return  # nothing to keep of this step
        k = Kept(time.time_ns(), obs.t, obs.raw, obs.frame, obs.sensors, out.calm, onset)
        if expected is not None:
            res = out.residual
            k.expected, horizon = expected
            k.heatmap = res.heatmap if res is not None else np.zeros((1, 1), np.float32)
            k.meta = {
                "time": time.time(), "model": self.model_name, "horizon_s": horizon,
                "score": out.score if math.isfinite(out.score) else None, "state": out.state,
                "alarm": out.alarm, "speed_limit_pct": out.speed_limit,
            }  # fmt: skip
        try:
            self.footage.put_nowait(k)
        except asyncio.QueueFull:
            self.counters.footage_dropped += 1

    async def _footage(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            k = await self.footage.get()
            try:
                await loop.run_in_executor(self._footage_executor, self.keeper.add, k)
            except (OSError, ValueError) as e:  # a full disk must not stop the monitor
                self.counters.footage_errors += 1
                if self.counters.footage_errors in (1, 10, 100) or not (
                    self.counters.footage_errors % 1000
                ):
                    log.error("footage not kept (%d so far): %s", self.counters.footage_errors, e)

    def _stalled(self) -> None:
        """No frame for ``stall_s``: a health fault for the alarm engine (it releases any limit)."""
        if self.stalled_since is not None:
            return
        self.stalled_since = self._last_frame
        self.counters.stalls += 1
        log.warning(
            "camera stalled: no frame for %.1f s; model health fault, any slow-down released",
            time.monotonic() - self._last_frame,
        )
        inp = self.inputs
        running = inp.running if inp is not None and inp.ok and inp.line_state is not None else True
        tick = alarms.Tick(self._last_t, math.nan, healthy=False, running=running)
        pipe = self.pipe
        pipe.state, cmds = alarms.step(pipe.acfg, pipe.thr, pipe.state, tick)
        for cmd in cmds:
            self.commands.put((cmd, time.monotonic(), pipe.state.mode))
        self._emit("health", {"reason": "no_frame", "code": 1})

    async def swap_model(self, path: str | Path | None = None) -> str:
        """Hot-swap to the model directory ``path`` (None: reload the one running); returns the
        new version. A refused candidate raises ``InputError`` (one line); the old model runs on.
        """
        where = Path(path) if path else self.model_dir
        if where is None:
            raise InputError("no model directory to reload: pass the new model's path")
        async with self._swap_lock:
            previous = self.model_name
            try:
                cand = await asyncio.to_thread(swap.prepare, self.pipe, where)
            except InputError as e:
                self.counters.swaps_refused += 1
                self.last_swap = {"time": time.time(), "path": str(where), "ok": False}
                self.last_swap["error"] = str(e)
                log.error("model swap refused: %s", e)
                self._emit("model", {"event": "refused", "version": previous, "error": str(e)})
                raise

            def take() -> None:  # model thread, between two steps
                swap.apply(self.pipe, cand, self._last_t)
                self.model_name = cand.version

            await asyncio.get_running_loop().run_in_executor(self._executor, take)
            self.model_dir = cand.path
            self.counters.swaps += 1
            self.keeper.model = cand.version
            self.drift.acknowledge()  # a new model: a new reference for drift
            self.drift_event = None
            self.last_swap = {"time": time.time(), "path": str(where), "ok": True}
            self.last_swap["version"] = cand.version
            log.info("model swapped: %s -> %s (%s)", previous, cand.version, where)
            self._emit("model", {"event": "swap", "version": cand.version, "previous": previous})
            return cand.version

    def request_swap(self, path: str | Path | None = None) -> None:
        """Start ``swap_model(path)`` in the background (SIGHUP, the request file)."""

        async def go() -> None:
            with contextlib.suppress(InputError):  # refused: logged, stored, in the health file
                await self.swap_model(path)

        task = asyncio.get_running_loop().create_task(go(), name="model-swap")
        self._swaps.add(task)
        task.add_done_callback(self._swaps.discard)

    def _take_request(self) -> None:
        """Consume the swap request file, if there is one, and start the swap it asks for."""
        text = swap.take_request(self.swap_request)
        if text is not None:
            log.info("swap request: %s", text or "reload the running model's directory")
            self.request_swap(text or None)

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
                async with asyncio.timeout(timeout):
                    item = await self.commands.get()
            if item is not None:
                await self._apply(*item)
            if time.monotonic() >= next_beat:
                next_beat += hb
                self.counters.heartbeats += int(await self.act.heartbeat())
                self.inputs = await self.act.read_inputs()
                state = self.pipe.state.mode  # the engine's mode (also set by a camera stall)
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
                self.store.write_residual(p["model"], out.score, out.instant, hz)
                self.store.write_alarm(p["model"], out.state, out.alarm, out.speed_limit)
                if out.health:
                    self.store.write_health(out.health, 1, self.counters.dropped_frames)
            elif kind == "command":
                a = p["applied"]
                self.store.write_command(p["cmd"].reason, a.requested, a.read_back, a.confirmed)
            elif kind == "health":
                self.store.write_health(p["reason"], p["code"], self.counters.dropped_frames)
            elif kind == "drift":
                write_event(self.store, p["event"])
            elif kind == "model":
                tags = {"line": self.store.line, "event": p["event"], "version": p["version"]}
                tags |= {k: str(p[k])[:200] for k in ("previous", "error") if p.get(k)}
                fields = {"swapped": int(p["event"] == "swap")}
                self.store.write([Point("model", tags, fields, time.time_ns())])

    async def _health(self) -> None:
        path = Path(self.cfg.monitor.health_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        notify("READY=1")
        while True:
            self.write_health(path)
            notify("WATCHDOG=1")  # systemd's WatchdogSec: the event loop is alive
            self._take_request()
            await asyncio.sleep(1.0)

    def write_health(self, path: Path) -> None:
        """Atomically rewrite the health file."""
        last, stalled = self.last, self.stalled_since is not None
        doc = {
            "time": time.time(),
            "state": self.pipe.state.mode if last or stalled else "starting",
            "health": "no_frame" if stalled else (last.health if last else None),
            "score": last.score if last and np.isfinite(last.score) else None,
            "model": self.model_name,
            "model_swap": self.last_swap,
            "frame_age_s": round(time.monotonic() - self._last_frame, 3),
            "plc_ok": bool(self.inputs.ok) if self.inputs is not None else None,
            "drift": self.drift_event,
            "footage": dict(self.keeper.counts),
            "counters": {k: v for k, v in asdict(self.counters).items() if k != "latencies_ms"},
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc) + "\n")
        os.replace(tmp, path)

    async def _shutdown(self) -> None:
        """Restore the PLC's speed, flush the store, stop the model thread."""
        notify("STOPPING=1")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                applied = await self._restore()
            log.info("speed limit restored to 100 %% (confirmed: %s)", applied.confirmed)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.act.set_alarm_state(0), 2.0)
        with contextlib.suppress(Exception):
            await self.act.close()
        while not self.telemetry.empty():
            self._write([self.telemetry.get_nowait()])
        self._footage_executor.shutdown(wait=True)  # the keeper's last step ends first
        with contextlib.suppress(Exception):  # unfinished footage is not known to be normal
            while not self.footage.empty():
                self.keeper.add(self.footage.get_nowait())
            self.keeper.close()
        self.write_health(Path(self.cfg.monitor.health_file))
        self._executor.shutdown(wait=True)

    async def _restore(self):
        """Ramp the limit back to 100 % through the guard, beating the heartbeat meanwhile."""
        applied = await self.act.apply(100.0)
        while applied.limit is not None and applied.limit < 100.0 and applied.reason != "dry_run":
            await asyncio.sleep(self.cfg.plc.heartbeat_s)
            await self.act.heartbeat()
            applied = await self.act.apply(100.0)
        return applied


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
