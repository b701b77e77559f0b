"""Drift to retrain to hot swap, end to end, on the running monitor.

The line's carton supplier changes (``sim.supplier_change_at``: new blanks, the cartons look
different from then on, no stop). The monitor keeps running; its drift detector raises the
event (a plant change) and, as configured (``retrain.on_drift``), queues a retrain request; its
rolling archive holds the new footage; the retrain service takes the request and fine-tunes on
the archive's footage since the drift, the gate passes, an operator promotes the candidate, and
the monitor swaps models between two frames without stopping. Under the new model the residuals
are back at their old level. (A deliberately bad candidate is rejected by the same gate:
``test_gate_rejects_a_broken_candidate`` in ``test_retrain.py``; a model the monitor cannot take
is refused: ``test_monitor_swap.py``.)
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np

from foresight.config import load_config
from foresight.dashboard import requests as rq
from foresight.model.fit import fit
from foresight.monitor.app import run_monitor
from foresight.retrain import run
from foresight.retrain.config import RetrainConfig
from foresight.sim.generate import simulate_to_dir
from foresight.store import Store

SEED = 11  # the line's own footage and the live line: the same carton supplier until the change
CHANGE_AT = 150.0  # simulated seconds


async def _until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_supplier_change_drifts_retrains_and_swaps_without_stopping(tmp_path):
    over = [
        f"monitor.health_file={json.dumps(str(tmp_path / 'mon' / 'health.json'))}",
        f"store.path={json.dumps(str(tmp_path / 'store.sqlite'))}",
        "monitor.speed=4",
        "plc.heartbeat_s=0.2",
        "sim.faults_per_hour=0",
        f"sim.seed={SEED}",
        "drift.sample_seconds=10",
        "drift.min_samples=10",
        "monitor.footage.segment_s=20",
        "monitor.footage.guard_s=5",
        "train.max_steps=100",
        "retrain.on_drift=true",  # the monitor queues the retrain itself ...
        "retrain.on_drift_wait_hours=0.003",  # ... due after 11 s of footage since the drift
    ]
    cfg = load_config(preset="tiny", environ={}, overrides=over)
    simulate_to_dir(cfg.sim, tmp_path / "normal", hours=8 / 60, progress=False)
    fit(cfg, tmp_path / "normal", tmp_path / "first", progress=False)

    rcfg = RetrainConfig(
        models_dir=str(tmp_path / "models"),
        max_steps=150,
        max_minutes=None,
        # Held out here: the newest 20 % of a few minutes of archive, a few hundred steps. Such a
        # small set cannot show 0.5 false alarms per shift, and its prediction errors move by
        # tens of percent between two equally good models: the gate's figures are loosened.
        false_alarms_per_shift=2000.0,
        error_tolerance=0.25,
    )
    run.versions_of(cfg, rcfg).adopt(tmp_path / "first", "test")
    live = cfg.model_copy(
        update={
            "sim": cfg.sim.model_copy(update={"supplier_change_at": CHANGE_AT}),
            "monitor": cfg.monitor.model_copy(update={"model": str(tmp_path / "first")}),
        }
    )
    archive = tmp_path / "mon" / "archive"
    requests = tmp_path / "mon" / "requests"
    seen: dict = {}

    def new_segments() -> int:
        return sum(
            1
            for p in archive.glob("*.json")
            if json.loads(p.read_text())["start_ns"] > seen.get("drift_ns", 2**63)
        )

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_monitor(live, stop, on_start=lambda m: seen.update(m=m)))
        await _until(lambda: "m" in seen, 60, "the monitor to start")
        m = seen["m"]
        passed = lambda: m.last is not None and m.last.t >= CHANGE_AT  # noqa: E731
        await _until(passed, 120, "the supplier change")
        seen["change_ns"] = time.time_ns()
        await _until(lambda: m.drift_event is not None, 240, "the drift event")
        seen["drift"], seen["drift_ns"] = m.drift_event, time.time_ns()
        # 10 segments (200 s): 2 held out for the gate, 2 of the 8 to train on calibrate the
        # candidate. Twice (with 6, and in CI with 10) the new model's scores stayed at the
        # drifted level (median 14.7): a background frozen through the drift's "obstructed"
        # fault, which the swap now lets relearn (``foresight.monitor.swap``).
        await _until(lambda: new_segments() >= 10, 240, "footage of the new cartons")
        # The retrain service (`foresight retrain --requests DIR`) carries out the monitor's
        # request: fine-tune on the footage since the drift, gate, version; no promotion yet.
        queued = rq.pending(requests) + rq.in_progress(requests)
        seen["request"] = queued[0] if queued else None
        await asyncio.to_thread(run.serve_requests, live, rcfg, requests, False)
        done = rq.finished(requests)
        vs = run.versions_of(live, rcfg)
        seen["retrain"] = (done[-1] if done else None, vs.names(), vs.current)
        if done and done[-1].ok:
            version = vs.names()[-1]
            run.promote(live, rcfg, version, by="op", reason="new supplier")  # the approval
            await _until(lambda: m.counters.swaps == 1, 60, "the hot swap")
            at_swap = m.counters.steps
            await _until(lambda: m.counters.steps > at_swap + 400, 120, "steps on the new model")
            # A false alarm of the new model (calibrated on 40 s) slows the line, and the score
            # of a model that never saw the line at 70 % cannot clear there: the slow-down ends
            # by its timeout (alarms.max_slowdown_s). Run on until 300 steps at full speed.
            full, last = 0, m.counters.steps

            def at_full_speed() -> bool:
                nonlocal full, last
                now = m.counters.steps  # sampled every 0.1 s: a few steps at a time
                if m.last.speed_limit >= 100.0 and not m.last.alarm:
                    full += now - last
                last = now
                return full >= 300

            await _until(at_full_speed, 180, "300 steps at full speed under the new model")
        stop.set()
        return await task

    counters = asyncio.run(scenario())
    drift, (req, versions, current_before) = seen["drift"], seen["retrain"]
    assert drift["t"] > CHANGE_AT and drift["kind"] == "plant_change", drift
    assert seen["request"].operator == "monitor (drift)"
    assert seen["request"].params["since_ns"] == drift["time_ns"]
    assert req is not None and req.ok, req
    assert versions == ["v0001", "v0002"] and current_before == "v0001"  # approval needed
    assert counters.swaps == 1 and counters.swaps_refused == 0
    health = json.loads((tmp_path / "mon" / "health.json").read_text())
    assert health["model"] != "" and health["model_swap"]["ok"] and health["drift"] is None

    # The monitor never stopped: its steps are one run, before and after the swap.
    with Store.open(live.store, readonly=True) as store:
        steps = store.query("residual", 0, 2**62)
        models = store.query("model", 0, 2**62)
        limits = store.query("alarm", 0, 2**62)  # one per step, a moment after its residual
    assert [p.tags["event"] for p in models] == ["start", "swap"]
    swap_ns = models[1].time_ns
    first, second = models[0].tags["version"], models[1].tags["version"]
    score = {first: [], second: []}
    for p in steps:
        if p.fields.get("score") is not None and p.tags.get("model") in score:
            score[p.tags["model"]].append((p.time_ns, p.fields["score"]))
    old = np.array(score[first], dtype=float)
    new = np.array(score[second], dtype=float)
    lim_t = np.array([p.time_ns for p in limits], dtype=float)
    lim_v = np.array([p.fields["speed_limit_pct"] for p in limits], dtype=float)
    at = np.minimum(np.searchsorted(lim_t, new[:, 0]), len(lim_t) - 1)
    full_speed = (lim_v[at] >= 100.0) & (lim_t[at] - new[:, 0] < 0.02e9)
    calm = (old[:, 0] > models[0].time_ns + 5e9) & (old[:, 0] < seen["change_ns"] - 1e9)
    before = old[calm, 1]  # the old supplier, the old model
    drifted = old[old[:, 0] > seen["drift_ns"], 1]  # the new supplier, the old model
    after = new[(new[:, 0] > swap_ns + 5e9) & full_speed, 1]  # the new supplier, new model
    assert len(before) > 100 and len(drifted) > 100 and len(after) > 100
    med = {k: float(np.nanmedian(v)) for k, v in [("b", before), ("d", drifted), ("a", after)]}
    assert med["d"] > 2 * med["b"], med  # the drift the detector saw
    back = med["a"] < 0.5 * med["d"] and med["a"] < 2 * med["b"] + 1.0
    assert back, (med, req.message)  # back to normal
