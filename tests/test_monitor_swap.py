"""Hot swap of the model in a running monitor, and Enable off at the monitor level.

One run of the real monitor (simulated line, asyncua PLC simulator on loopback with ``Enable``
off, local store): frames keep flowing across a swap, the version changes, nothing recompiles;
a wrong architecture and an uncalibrated model are refused with one line and the old model runs
on; the request file swaps back. With Enable off, commands are made but no limit is written.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from foresight.bench.faults import bench_model
from foresight.config import load_config
from foresight.errors import InputError
from foresight.model.checkpoint import build_model, load_model, save_model
from foresight.monitor.app import SAMPLE_MODEL, run_monitor
from foresight.plc.sim_server import PlcSim
from foresight.store import Store


def _variants(tmp_path):
    a = bench_model(SAMPLE_MODEL, tmp_path / "a", hot=True)  # holds a slow-down
    b = load_model(a)
    b.card["created"] = "2031-01-01T00:00:00+00:00"
    good = save_model(b, tmp_path / "b")
    wide = b.model_cfg.model_copy(update={"deter": b.model_cfg.deter * 2})
    b.model, b.model_cfg = build_model(wide, 32, b.model.n_sensors), wide
    wrong = save_model(b, tmp_path / "wrong")
    c = load_model(a)
    c.card.pop("calibration")
    c.extra = {}
    bare = save_model(c, tmp_path / "bare")
    return a, good, wrong, bare


async def _steps(m, n: int, timeout: float = 30.0) -> float:
    t0, start = time.monotonic(), m.counters.steps
    while m.counters.steps < start + n:
        assert time.monotonic() - t0 < timeout, "frames stopped flowing"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_hot_swap_refusals_request_file_and_enable_off(tmp_path):
    a, good, wrong, bare = _variants(tmp_path)
    over = [
        f"monitor.model={a}",
        f"monitor.health_file={tmp_path / 'health.json'}",
        f"store.path={tmp_path / 'store.sqlite'}",
        "monitor.speed=3",
        "plc.heartbeat_s=0.2",
        "plc.security_policy=None",
        "plc.security_mode=None",
        "plc.allow_insecure=true",
    ]
    cfg = load_config(preset="tiny", environ={}, overrides=over)
    out: dict = {}

    async def body() -> None:
        async with PlcSim(cfg.plc) as sim:
            await sim.set("enable", False)
            plc = cfg.plc.model_copy(update={"endpoint": sim.endpoint})
            run = cfg.model_copy(update={"plc": plc})
            stop, box = asyncio.Event(), {}
            task = asyncio.create_task(run_monitor(run, stop, on_start=lambda m: box.update(m=m)))
            while "m" not in box:
                await asyncio.sleep(0.05)
            m = box["m"]
            await _steps(m, 20, 120)  # compiled and running
            # the hot model commands its slow-down once the cold start has settled; wait for it
            # here, so the Enable-off check below does not race the swaps' score hold-off
            t0 = time.monotonic()
            while m.counters.commands < 1:
                assert time.monotonic() - t0 < 60, "the hot model never commanded a slow-down"
                await asyncio.sleep(0.05)
            v0, jitted = m.model_name, list(m.pipe.pred._scored.values())
            sizes = [f._cache_size() for f in jitted]
            v1 = await m.swap_model(good)
            out["swap_gap_s"] = await _steps(m, 5)  # frames keep flowing after the swap
            assert v1 != v0 and m.model_name == v1
            assert m.pipe.bundle.card["created"] == "2031-01-01T00:00:00+00:00"
            assert [f._cache_size() for f in jitted] == sizes  # nothing recompiled
            for bad, why in ((wrong, "different architecture"), (bare, "not calibrated")):
                with pytest.raises(InputError, match=why) as err:
                    await m.swap_model(bad)
                assert "\n" not in str(err.value)
                assert m.model_name == v1  # the old model runs on
                await _steps(m, 3)
            m.swap_request.write_text(f"{a}\n")  # swap back through the request file
            t0 = time.monotonic()
            while m.model_name != v0:
                assert time.monotonic() - t0 < 10, "request file not taken"
                await asyncio.sleep(0.05)
            assert not m.swap_request.exists()
            await _steps(m, 5)
            # Enable off: the slow-down is commanded but never written; the heartbeat is
            out["commands"], out["written"] = m.counters.commands, sim.writes["speed_limit_pct"]
            out["beats"], out["limit"] = sim.writes["heartbeat"], sim.value("speed_limit_pct")
            out["counters"] = m.counters
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(body(), 240))
    assert out["commands"] >= 1 and out["written"] == 0 and out["limit"] == 100.0
    assert out["beats"] > 5
    c = out["counters"]
    assert (c.swaps, c.swaps_refused) == (2, 2)
    with Store.open(cfg.store, readonly=True) as store:
        events = [p.tags["event"] for p in store.query("model", 0, 2**62)]
        versions = {p.tags["model"] for p in store.query("residual", 0, 2**62)}
    assert events == ["start", "swap", "refused", "refused", "swap"]
    assert len(versions) == 2  # residuals tagged with the version that scored them


def test_swap_takes_the_new_calibrations_gate_settings_and_keeps_their_state(tmp_path):
    """The occlusion fraction is fitted per model: a swap must not leave the old one in force."""
    from foresight.monitor import swap
    from foresight.pipeline import OcclusionGate, Pipeline

    a = load_model(SAMPLE_MODEL)
    pipe = Pipeline(a)
    b = load_model(SAMPLE_MODEL)
    res = b.card["calibration"]["residuals"]
    res["occlusion_fraction"] = pipe.occlusion.fraction / 2
    res["global_fraction"] = 0.123
    res["smooth_seconds"] = res["smooth_seconds"] + 0.5
    pipe.occlusion.until, pipe.speed_gate.until = 5.0, 7.0  # an occlusion and a speed change
    swap.apply(pipe, swap.Candidate(tmp_path, b, "b"), now=1.0)
    assert pipe.occlusion.fraction == res["occlusion_fraction"]
    assert pipe.health.cfg.global_fraction == 0.123
    want_hold = OcclusionGate(pipe.rcfg, max(pipe.horizons)).hold_s
    assert pipe.occlusion.hold_s == want_hold
    assert pipe.occlusion.until >= 5.0 and pipe.speed_gate.until == 7.0  # state kept


def test_after_a_swap_the_background_learns_even_through_a_health_fault(tmp_path):
    """Through a long "obstructed" fault the background is frozen at the old scene; the new
    model must not inherit that (it would keep the view "obstructed")."""
    import dataclasses

    import numpy as np

    from foresight.monitor import swap
    from foresight.pipeline import Pipeline

    pipe = Pipeline(load_model(SAMPLE_MODEL))
    size = int(pipe.bundle.data["image_size"])
    raw = np.zeros(len(pipe.channels))
    old, new = (np.full((size, size, 3), v, np.uint8) for v in (40, 200))
    for k in range(5):
        pipe.step(old, raw, k / pipe.fps)

    def faulted_step(frame, k):
        pipe.state = dataclasses.replace(pipe.state, mode="health_fault")
        pipe.step(frame, raw, k / pipe.fps)
        return float(np.mean(pipe.features.carry.bg))

    frozen = float(np.mean(pipe.features.carry.bg))
    assert faulted_step(new, 5) == frozen  # a fault: the background does not learn
    swap.apply(pipe, swap.Candidate(tmp_path, load_model(SAMPLE_MODEL), "b"), now=5 / pipe.fps)
    assert pipe.relearn_until > 5 / pipe.fps
    assert faulted_step(new, 6) > frozen + 0.1  # the swap's settle: it learns the new scene
    pipe.relearn_until = -np.inf
    now = float(np.mean(pipe.features.carry.bg))
    assert faulted_step(new, 7) == now  # and after it, the fault freezes it again
