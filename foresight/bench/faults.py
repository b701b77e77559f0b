"""``foresight bench faults``: inject faults into a running monitor and measure what was lost.

Two runs of the real monitor code, with the PLC simulator (asyncua, OPC UA over loopback) and,
when Debian's ``victoria-metrics`` is installed, a real InfluxDB-write-API server:

1. **The monitor as its own process** (``python -m foresight.cli monitor``), with a copy of the
   model whose alarm level every score exceeds, so it holds a slow-down (a limit below 100 %) that
   the faults can disturb. The PLC simulator runs here, outside it:

   - *InfluxDB down* for ``outage_s`` (victoria-metrics stopped, then restarted on the same port
     and data): spool backlog, time to drain it after the restart;
   - *PLC disconnect* (the OPC UA server stopped for ``plc_down_s``, then a fresh one, limit back
     at 100, on the same port): time from the restart to the first heartbeat (session back) and to
     the re-asserted limit;
   - *kill -9* of the monitor: time until the PLC's heartbeat watchdog puts the limit back to 100,
     what the spool holds after the kill, time for a restarted monitor to step again and forward
     its backlog; then a SIGTERM to check the graceful stop restores 100 %.

   At the end every point the spool holds is looked up in victoria-metrics (its export API):
   points lost, and points delivered twice (at-least-once delivery after a kill).
2. **The camera in-process** (``run_monitor`` with a wrapped source, embedded PLC simulator and
   simulated line with no faults or nuisances): the source *stalls* (delivers nothing), then
   delivers a *frozen* frame, each for ``camera_fault_s``; measured: time until the health file
   reports it, and slow-downs started during the fault (target 0).

Figures go to the ``faults`` section of BENCHMARKS.md with the command, machine and date.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from foresight.bench.report import section, write_section
from foresight.config import Config, to_toml
from foresight.model.checkpoint import load_model, save_model
from foresight.monitor.sources import Observation
from foresight.pipeline import configs_of
from foresight.plc.sim_server import PlcSim, free_port
from foresight.store import Spool, StoreConfig, StoreError

log = logging.getLogger(__name__)


class CameraFaults:
    """Wraps a source: ``stall()`` stops delivery, ``freeze()`` repeats one frame, ``resume()``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self._go = asyncio.Event()
        self._go.set()

    def stall(self) -> None:
        """Deliver nothing until ``resume``."""
        self.mode = "stall"
        self._go.clear()

    def freeze(self) -> None:
        """Keep delivering, always the same picture."""
        self.mode = "freeze"

    def resume(self) -> None:
        """Back to the live picture."""
        self.mode = "ok"
        self._go.set()

    async def wrap(self, source: AsyncIterator[Observation]) -> AsyncIterator[Observation]:
        """The faulty source."""
        frozen = None
        async for obs in source:
            await self._go.wait()
            if self.mode == "freeze":
                frozen = obs.frame if frozen is None else frozen
                obs = obs._replace(frame=frozen)
            else:
                frozen = None
            yield obs


class Victoria:
    """A victoria-metrics server on a free loopback port (stop/start keeps port and data)."""

    def __init__(self, data: Path, exe: str | None = None) -> None:
        found = exe or shutil.which("victoria-metrics")
        if found is None:
            raise FileNotFoundError("victoria-metrics is not installed (apt-get install it)")
        self.exe, self.data, self.port = found, data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Victoria:
        """Start and wait for ``/health``."""
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [self.exe, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data}"]
        cmd += ["-retentionPeriod=100y", "-loggerLevel=ERROR"]
        with open(self.data.with_suffix(".log"), "ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.05)
        raise RuntimeError(f"victoria-metrics did not start on {self.url}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(15)
            self._proc = None

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, Any]]:
        """Every series matching ``match`` with its samples."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=60) as r:
            return [json.loads(x) for x in r.read().decode().splitlines() if x]


def delivery(store_path: Path, vm: Victoria) -> dict[str, int]:
    """Points in the spool vs samples in victoria-metrics: held, lost, delivered twice."""
    spool = Spool(StoreConfig(path=str(store_path)), readonly=True)
    try:
        rows = spool.read("SELECT measurement, tags, fields, time_ns, state FROM points")
        stats = spool.stats()
    finally:
        spool.close()
    want: dict[tuple, int] = {}
    for i, (m, tags, fields, t, _) in enumerate(rows):
        lab = tuple(sorted(json.loads(tags).items()))
        for f in json.loads(fields):
            want[(f"{m}_{f}", lab, int(t) // 1_000_000)] = i
    got: collections.Counter[tuple] = collections.Counter()
    for s in vm.export():
        lab = tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__"))
        for ts in s["timestamps"]:
            got[(s["metric"]["__name__"], lab, int(ts))] += 1
    lost = {i for k, i in want.items() if got[k] == 0}
    twice = {want[k] for k, n in got.items() if n > 1 and k in want}
    return {
        "points": len(rows),
        "lost": len(lost),
        "twice": len(twice),
        "pending": stats.pending,
        "dropped": stats.dropped,
    }


async def until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Seconds until ``check()`` holds; ``TimeoutError`` after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"not within {timeout:g} s")
        await asyncio.sleep(step)
    return time.monotonic() - t0


def _health(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _pending(path: Path, before_ns: int | None = None) -> int:
    """Unforwarded points (written before ``before_ns`` when given); -1 before the file exists."""
    try:
        spool = Spool(StoreConfig(path=str(path)), readonly=True)
    except StoreError:
        return -1
    try:
        if before_ns is None:
            return spool.stats().pending
        q = "SELECT count(*) FROM points WHERE state = 0 AND time_ns < ?"
        return int(spool.read(q, [before_ns])[0][0])
    finally:
        spool.close()


def bench_model(src: Path, dst: Path, hot: bool) -> Path:
    """A copy of the model for the bench: the occlusion gate off (the sample model sees the
    simulated line as occluded, and after 10 s "obstructed", which would hide the faults under a
    health fault of its own) and, when ``hot``, an alarm level every score exceeds (it holds a
    slow-down the faults can disturb) with a fixed settling time."""
    bundle = load_model(src)
    cal = bundle.card.setdefault("calibration", {})
    cal["residuals"] = {**cal.get("residuals", {}), "occlusion_fraction": 1.0}
    if hot:
        cal["thresholds"] = {"watch": -100.0, "alarm": -100.0, "clear": -200.0, "baseline": -300.0}
        # a score above every level never settles: a fixed settling time after a (cold) start
        cal["alarms"] = {**cal.get("alarms", {}), "settle_max_s": 0.0}
    return save_model(bundle, dst)


async def stop_plc(sim: PlcSim) -> None:
    """Stop the simulator like a PLC going off the network.

    asyncua's ``Server.stop`` closes the open connections first and the listening socket last;
    a client that reconnects in between keeps the server's ``wait_closed`` waiting for ever (seen
    with the monitor's fast reconnect). So the listener is closed first (asyncua internals).
    """
    server = getattr(sim, "_server", None)
    listener = getattr(getattr(server, "bserver", None), "_server", None)
    if listener is not None:
        listener.close()
    await asyncio.wait_for(sim.stop(), 30)


def _plc_cfg(cfg: Config):
    insecure = {"security_policy": "None", "security_mode": "None", "allow_insecure": True}
    return cfg.plc.model_copy(update=insecure)


def _child_config(cfg: Config, work: Path, model: Path, endpoint: str, influx: str | None) -> Path:
    """The monitor's config file for the process run."""
    upd = {
        "monitor": cfg.monitor.model_copy(
            update={
                "model": str(model),
                "health_file": str(work / "health.json"),
                "swap_request": None,
                "duration_s": None,
                "speed": cfg.monitor.speed,
            }
        ),
        "store": cfg.store.model_copy(update={"path": str(work / "store.sqlite")}),
        "plc": _plc_cfg(cfg).model_copy(update={"endpoint": endpoint}),
        "influx": cfg.influx.model_copy(update={"url": influx}),
    }
    path = work / "monitor.toml"
    path.write_text(to_toml(cfg.model_copy(update=upd)))
    return path


async def _launch(config: Path, work: Path) -> asyncio.subprocess.Process:
    out = open(work / "monitor.log", "ab")  # noqa: SIM115 (the child keeps it)
    cmd = [sys.executable, "-m", "foresight.cli", "monitor", "-c", str(config)]
    return await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=out)


async def process_run(
    cfg: Config, work: Path, outage_s: float, plc_down_s: float, model: Path
) -> dict[str, Any]:
    """Scenario 1: InfluxDB outage, PLC disconnect and kill -9 of a monitor process."""
    r: dict[str, Any] = {}
    work.mkdir(parents=True, exist_ok=True)
    store, health = work / "store.sqlite", work / "health.json"
    try:
        vm: Victoria | None = await asyncio.to_thread(Victoria(work / "vm").start)
    except (FileNotFoundError, RuntimeError) as e:
        vm, r["influx_skipped"] = None, str(e)
    pcfg = _plc_cfg(cfg)
    sim = PlcSim(pcfg)
    await sim.start()
    hot = bench_model(model, work / "hot-model", hot=True)
    config = _child_config(cfg, work, hot, sim.endpoint, vm.url if vm else None)
    proc = await _launch(config, work)
    try:
        target = configs_of(load_model(hot))[1].slowdown_pct
        r["start_s"] = await until(lambda: sim.value("speed_limit_pct") <= target, 300, 0.1)
        await until(lambda: _pending(store) >= 0, 30)
        if vm is not None:
            await asyncio.to_thread(vm.stop)
            await asyncio.sleep(outage_s)
            r["backlog"] = _pending(store)
            await asyncio.to_thread(vm.start)
            up = time.time_ns()  # drained: nothing from before the restart still unforwarded
            r["drain_s"] = await until(lambda: _pending(store, up) == 0, 900, 0.2)
        await stop_plc(sim)
        await asyncio.sleep(plc_down_s)
        sim = PlcSim(pcfg, port=sim.port)
        await sim.start()
        t0 = time.monotonic()
        await until(lambda: sim.writes["heartbeat"] > 0, 120)
        r["plc_session_s"] = time.monotonic() - t0
        await until(lambda: abs(float(sim.value("speed_limit_pct")) - target) < 1e-6, 120)
        r["plc_reassert_s"] = time.monotonic() - t0
        r["plc_after_session_s"] = r["plc_reassert_s"] - r["plc_session_s"]
        r["target_pct"] = target
        await asyncio.sleep(1.0)
        steps_before = _health(health).get("counters", {}).get("steps", 0)
        proc.kill()  # kill -9
        await proc.wait()
        t_kill, killed = time.monotonic(), time.time_ns()
        r["revert_s"] = await until(lambda: sim.value("speed_limit_pct") == 100.0, 30)
        r["timeout_s"] = pcfg.heartbeat_timeout_s
        r["steps_at_last_health"] = steps_before
        r["after_kill"] = await asyncio.to_thread(_counts, store)
        proc = await _launch(config, work)

        def stepping() -> bool:
            h = _health(health)
            return h.get("time", 0) * 1e9 > killed and h.get("counters", {}).get("steps", 0) > 0

        await until(stepping, 300, 0.1)
        r["restart_s"] = time.monotonic() - t_kill
        if vm is not None:
            await until(lambda: _pending(store, killed) == 0, 900, 0.2)
            r["resume_drain_s"] = time.monotonic() - t_kill
        await until(lambda: sim.value("speed_limit_pct") <= target, 120, 0.1)
        proc.send_signal(signal.SIGTERM)
        r["sigterm_rc"] = await asyncio.wait_for(proc.wait(), 60)
        r["after_sigterm_pct"] = float(sim.value("speed_limit_pct"))
        if vm is not None:
            r["delivery"] = await asyncio.to_thread(delivery, store, vm)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await stop_plc(sim)
        if vm is not None:
            vm.stop()
    return r


def _counts(store: Path) -> dict[str, int]:
    """Points of the first run that the spool holds after the kill."""
    spool = Spool(StoreConfig(path=str(store)), readonly=True)
    try:
        (alarm,) = spool.read("SELECT count(*) FROM points WHERE measurement = 'alarm'")[0]
        return {"rows": spool.stats().rows, "alarm": int(alarm)}
    finally:
        spool.close()


async def camera_run(cfg: Config, work: Path, fault_s: float, model: Path) -> dict[str, Any]:
    """Scenario 2: the camera stalls, then freezes, under the in-process monitor."""
    from foresight.monitor.app import run_monitor
    from foresight.store import Store

    work.mkdir(parents=True, exist_ok=True)
    health = work / "health.json"
    model = bench_model(model, work / "model", hot=False)
    quiet = {"faults_per_hour": 0.0, "nuisance_per_hour": 0.0}
    cfg = cfg.model_copy(
        update={
            "sim": cfg.sim.model_copy(update=quiet),
            "plc": cfg.plc.model_copy(update={"endpoint": None}),
            "influx": cfg.influx.model_copy(update={"url": None}),
            "store": cfg.store.model_copy(update={"path": str(work / "store.sqlite")}),
            "monitor": cfg.monitor.model_copy(
                update={
                    "model": str(model),
                    "source": "sim",
                    "plc_sim": True,
                    "health_file": str(health),
                    "swap_request": None,
                    "duration_s": None,
                    "speed": cfg.monitor.speed,
                }
            ),
        }
    )
    faults, box, stop = CameraFaults(), {}, asyncio.Event()
    r: dict[str, Any] = {}

    async def drive() -> None:
        while "m" not in box or box["m"].counters.steps < 30:
            await asyncio.sleep(0.1)
        m = box["m"]
        await asyncio.sleep(2.0)
        for kind, start in (("stall", faults.stall), ("freeze", faults.freeze)):
            before, t0, seen, reason = m.counters.alarms, time.time_ns(), None, None
            start()
            t = time.monotonic()
            while time.monotonic() - t < fault_s:
                got = _health(health).get("health")
                if seen is None and got:
                    seen, reason = time.monotonic() - t, got
                await asyncio.sleep(0.05)
            faults.resume()
            r[kind] = {"detected_s": seen, "reason": reason, "t0": t0}
            r[kind]["alarms"] = m.counters.alarms - before
            r[kind]["t1"] = time.time_ns()
            await asyncio.sleep(max(2.0, fault_s))
        stop.set()

    driver = asyncio.create_task(drive())
    await run_monitor(cfg, stop, wrap_source=faults.wrap, on_start=lambda m: box.update(m=m))
    await driver
    with Store.open(cfg.store, readonly=True) as s:
        for kind in ("stall", "freeze"):
            w = r[kind]
            cmds = s.query("command", w["t0"], w["t1"])
            r[kind]["slowdowns"] = sum(p.tags.get("reason") == "slowdown" for p in cmds)
            r[kind]["min_limit"] = min(
                [100.0] + [p.fields["requested_pct"] for p in cmds if "requested_pct" in p.fields]
            )
    return r


def _f(x: Any, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(p: dict[str, Any], c: dict[str, Any], outage_s: float, plc_down_s: float) -> str:
    """The markdown body of the section."""
    rows = []
    if "influx_skipped" in p:
        rows.append(f"| InfluxDB down {outage_s:g} s | not run: {p['influx_skipped']} | | |")
    else:
        d = p["delivery"]
        rows.append(
            f"| InfluxDB (victoria-metrics) down {outage_s:g} s | backlog {p['backlog']} points, "
            f"drained {_f(p['drain_s'], '.1f')} s after the restart | points lost: {d['lost']} "
            f"of {d['points']} (spool dropped {d['dropped']}) | {_met(not d['lost'])} |"
        )
    ok = p["plc_after_session_s"] <= 5.0
    rows.append(
        f"| PLC (OPC UA server) down {plc_down_s:g} s, restarted with the limit at 100 | session "
        f"back {_f(p['plc_session_s'])} s after the restart (reconnect back-off), limit "
        f"{p['target_pct']:g} % re-asserted {_f(p['plc_after_session_s'], '.3f')} s after that "
        f"({_f(p['plc_reassert_s'])} s after the restart) | none | {_met(ok)} (<= 5 s) |"
    )
    a = p["after_kill"]
    twice = p["delivery"]["twice"] if "delivery" in p else "n/a"
    rows.append(
        f"| `kill -9` of the monitor, then restart | PLC back to 100 % by its watchdog "
        f"{_f(p['revert_s'])} s after the kill (timeout {p['timeout_s']:g} s); restarted monitor "
        f"stepping {_f(p['restart_s'], '.1f')} s after the kill, backlog forwarded "
        f"{_f(p.get('resume_drain_s'), '.1f')} s after it | spool after the kill: "
        f"{a['alarm']} step points for {p['steps_at_last_health']} steps counted by the last "
        f"health file; delivered twice: {twice} | "
        f"{'met' if not p.get('delivery', {}).get('lost') else 'MISSED'} |"
    )
    for kind, what in (("stall", "camera stalls (no frames)"), ("freeze", "camera frozen frame")):
        k = c[kind]
        rows.append(
            f"| {what} for {c['fault_s']:g} s | health `{k['reason']}` after "
            f"{_f(k['detected_s'])} s | slow-downs started: {k['slowdowns']}, lowest limit "
            f"{k['min_limit']:g} % | {'met' if not k['slowdowns'] else 'MISSED'} |"
        )
    rows.append(
        f"| SIGTERM (graceful stop) | exit status {p['sigterm_rc']}, PLC limit "
        f"{p['after_sigterm_pct']:g} % after it | | "
        f"{'met' if p['after_sigterm_pct'] == 100.0 else 'MISSED'} |"
    )
    return (
        "The monitor process (`python -m foresight.cli monitor`, simulated line, a copy of the "
        "model with every score above its alarm level so it holds a slow-down) against the "
        "asyncua PLC simulator and victoria-metrics as the InfluxDB v2 write API, all on "
        "127.0.0.1; the camera faults in-process on the simulated line with no line faults. "
        "Points lost = points in the local spool missing from victoria-metrics at the end "
        "(every numeric field, by series, tags and millisecond). Targets: no point lost, the "
        "command re-asserted within 5 s of the reconnect, no slow-down caused by a camera "
        "fault.\n\n"
        "| fault | what happened | lost | target |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def bench_faults(
    cfg: Config,
    out: Path,
    workdir: Path,
    outage_s: float = 600.0,
    plc_down_s: float = 5.0,
    camera_fault_s: float = 10.0,
    command: str | None = None,
) -> str:
    """Run both scenarios, write the ``faults`` section of ``out``, return it."""
    from foresight.monitor.app import model_path

    model = model_path(cfg)
    shutil.rmtree(workdir, ignore_errors=True)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        p = await process_run(cfg, workdir / "process", outage_s, plc_down_s, model)
        c = await camera_run(cfg, workdir / "camera", camera_fault_s, model)
        c["fault_s"] = camera_fault_s
        return p, c

    p, c = asyncio.run(main())
    (workdir / "faults.json").write_text(json.dumps({"process": p, "camera": c}, indent=2))
    md = section("Fault injection (monitor)", report(p, c, outage_s, plc_down_s), command=command)
    write_section(out, "faults", md)
    return md


def cmd(args: Any) -> int:
    """``foresight bench faults``."""
    from foresight.cli import _config

    md = bench_faults(
        _config(args),
        Path(args.benchmarks),
        Path(args.workdir),
        args.outage_s,
        args.plc_down_s,
        args.camera_fault_s,
    )
    print(md)
    return 0


def register(bsub: Any) -> None:
    """Add ``faults`` to the ``bench`` sub-parsers."""
    from foresight.cli import _add_config_args

    p = bsub.add_parser("faults", help="inject faults into a running monitor; what was lost")
    _add_config_args(p)
    p.add_argument("--outage-s", type=float, default=600.0, help="InfluxDB down this long")
    p.add_argument("--plc-down-s", type=float, default=5.0, help="PLC server down this long")
    p.add_argument("--camera-fault-s", type=float, default=10.0, help="stall / freeze this long")
    p.add_argument("--workdir", default="runs/bench-faults", help="stores, logs, faults.json")
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    p.set_defaults(func=cmd)
