"""Build the monitor from the configuration (small factories) and run it.

Embedded default (no config at all): the simulated line runs live, the PLC simulator runs
in-process on a free 127.0.0.1 port and really slows the simulated feeder, telemetry goes to the
local store, and the model is the small sample model in ``data_samples/model`` (built by the
command in ``data_samples/README.md``).

With ``monitor.sensor_tags`` the mapped sensor channels come from an OPC UA subscription to the
PLC (``foresight.monitor.plc_sensors``). ``run_monitor`` takes two hooks for tests and the
fault-injection bench (``foresight bench faults``): ``wrap_source`` wraps the observation
source (a camera that stalls or freezes) and ``on_start`` receives the ``Monitor`` before it runs
(to call ``swap_model``, read its counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foresight.config import Config
from foresight.errors import InputError
from foresight.model.checkpoint import load_model
from foresight.monitor.runtime import Counters, Monitor, install_signal_handlers
from foresight.pipeline import Pipeline

log = logging.getLogger(__name__)
SAMPLE_MODEL = Path(__file__).resolve().parents[2] / "data_samples" / "model"


def model_path(cfg: Config) -> Path:
    """The configured model, or the shipped sample model."""
    path = Path(cfg.monitor.model) if cfg.monitor.model else SAMPLE_MODEL
    if not path.exists():
        raise InputError(
            f"{path}: no such model directory (set monitor.model, or build the sample model "
            "with the command in data_samples/README.md)"
        )
    return path


def make_source(cfg: Config, pipe: Pipeline, line: Any):
    """The observation source named by ``monitor.source``."""
    from foresight.monitor.sources import sim_source, video_source

    size = pipe.pred.image_size
    spec = cfg.monitor.source
    roi = pipe.bundle.roi
    if spec == "sim":
        from foresight.sim.camera import CodecStream

        return sim_source(CodecStream(line, cfg.sim.fps), size, cfg.monitor.speed, roi)
    sensors = None
    if cfg.monitor.sensors:
        from foresight.replay import read_sensors, steps_for

        steps = steps_for(Path(spec), pipe.fps) if Path(spec).is_file() else None
        if steps is None:
            raise InputError("monitor.sensors (a CSV replay) needs monitor.source to be a file")
        sensors = read_sensors(Path(cfg.monitor.sensors), pipe.channels, pipe.fps, steps)
    n = len(pipe.channels)
    return video_source(spec, size, cfg.monitor.speed, roi, sensors, pipe.fps, n)


async def run_monitor(
    cfg: Config,
    stop: asyncio.Event | None = None,
    *,
    wrap_source: Callable[[Any], Any] | None = None,
    on_start: Callable[[Monitor], Any] | None = None,
    line: Any = None,
) -> Counters:
    """Run the monitor until stopped (signal, ``stop``, end of source or ``duration_s``).

    ``line``: the simulated line to watch when ``monitor.source`` is ``sim`` (default: a new
    ``LineSim`` of ``cfg.sim``); benchmarks pass their own to observe it."""
    from foresight.plc import make_actuator
    from foresight.store import Store

    where = model_path(cfg)
    bundle = load_model(where)
    pipe = Pipeline(bundle)
    if line is None and cfg.monitor.source == "sim":
        from foresight.sim.line import LineSim

        line = LineSim(cfg.sim, seed=cfg.sim.seed)
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    async with contextlib.AsyncExitStack() as stack:
        plc_cfg = cfg.plc
        if plc_cfg.endpoint is None and cfg.monitor.plc_sim:
            from foresight.plc.sim_server import PlcSim

            plc_cfg = plc_cfg.model_copy(
                update={"security_policy": "None", "security_mode": "None", "allow_insecure": True}
            )
            sim = await stack.enter_async_context(PlcSim(plc_cfg, "127.0.0.1", 0, line=line))
            plc_cfg = plc_cfg.model_copy(update={"endpoint": sim.endpoint})
            log.info("embedded PLC simulator on %s", sim.endpoint)
        act = make_actuator(plc_cfg)
        await act.connect()
        stack.push_async_callback(act.close)
        store = Store.open(cfg.store, cfg.influx, line=cfg.line.name)
        stack.callback(store.close)
        source = make_source(cfg, pipe, line)
        if cfg.monitor.sensor_tags:
            from foresight.monitor.plc_sensors import PlcSensors, with_plc_sensors

            sensors = PlcSensors(plc_cfg, pipe.channels, cfg.monitor.sensor_tags, 500 / pipe.fps)
            await stack.enter_async_context(sensors)
            source = with_plc_sensors(source, sensors)
        if wrap_source is not None:
            source = wrap_source(source)
        monitor = Monitor(cfg, pipe, act, store, source, model_dir=where)
        if on_start is not None:
            on_start(monitor)
        if cfg.monitor.duration_s:
            asyncio.get_running_loop().call_later(cfg.monitor.duration_s, stop.set)
        return await monitor.run(stop)


def describe(c: Counters) -> str:
    """One paragraph for the CLI."""
    lat = sorted(c.latencies_ms)
    p50 = f"{lat[len(lat) // 2]:.0f} ms" if lat else "n/a"
    return (
        f"monitor stopped: {c.steps} model steps from {c.frames} frames "
        f"({c.dropped_frames} dropped, {c.skipped_ticks} ticks skipped), {c.alarms} slow-down(s), "
        f"{c.commands} command(s) ({c.commands_confirmed} confirmed, p50 frame-to-PLC {p50}), "
        f"{c.heartbeats} heartbeats, {c.telemetry_dropped} telemetry points dropped"
    )
