"""Fault precursors: visible but subtle; a jam forms unless the feeder slows down in time."""

from __future__ import annotations

import numpy as np
import pytest

from foresight.config import load_config
from foresight.schema import SENSOR_CHANNELS
from foresight.sim import scene as sc
from foresight.sim.config import FAULT_TYPES, SimConfig
from foresight.sim.line import LineSim, SimFrame

CH = {name: i for i, name in enumerate(SENSOR_CHANNELS)}
#: share of the frame a precursor may change; belt slip shifts every carton by a pixel or so
MAX_CHANGED = {k: 0.03 for k in FAULT_TYPES} | {"belt_slip": 0.12}


def tiny(**update) -> SimConfig:
    base = dict(faults_per_hour=0.0, nuisance_per_hour=0.0, speed_changes_per_hour=0.0)
    return load_config(preset="tiny").sim.model_copy(update=base | update)


def start_fault(sim: LineSim, kind: str, precursor: float = 2.5) -> SimFrame:
    """Run the line to steady state, inject ``kind`` and return the precursor's first frame."""
    for _ in range(round(6.0 * sim.cfg.fps)):
        sim.step()
    sim.inject_fault(kind, precursor)
    for _ in range(round(5.0 * sim.cfg.fps)):
        f = sim.step()
        if sim.active_fault is not None:
            return f
    raise AssertionError(f"{kind} did not start")


def faulty_carton(sim: LineSim):
    ev = sim.active_fault
    return next(c for c in sim.cartons() if c.id == ev.carton)


@pytest.mark.parametrize("kind", FAULT_TYPES)
def test_precursor_is_visible_small_and_growing(kind):
    sim = LineSim(tiny(), seed=11)
    first = start_fault(sim, kind)
    ev = sim.active_fault
    assert ev.kind == kind and ev.precursor_start == pytest.approx(first.t)
    assert 1.0 <= ev.duration <= 4.0
    assert np.array_equal(first.frame, sim.render_counterfactual())  # severity 0: no change yet
    size, changed, energy, truth = first.frame[:, :, 0].size, {}, {}, {}
    while True:
        f = sim.step()
        ev = sim.active_fault
        if ev.jam_onset is not None:
            break
        u = (f.t - ev.precursor_start) / ev.duration
        diff = np.abs(f.frame.astype(int) - sim.render_counterfactual().astype(int)).max(axis=2)
        for q in (0.3, 0.6, 0.95):
            if q not in changed and u >= q:
                changed[q] = np.count_nonzero(diff) / size
                energy[q] = int(diff.sum())
                c = faulty_carton(sim)
                truth[q] = (c.flap, c.angle, f.sensors.copy())
                if kind != "belt_slip":
                    ys, xs = np.nonzero(diff)
                    box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1) / size
                    assert box < 0.08, f"{kind}: change spread over {box:.1%} of the frame"
    assert set(changed) == {0.3, 0.6, 0.95}
    for q in changed:
        assert 0 < changed[q] < MAX_CHANGED[kind], (kind, q, changed[q])
    assert energy[0.95] > energy[0.3] > 0
    if kind in ("flap_rise", "glue_miss"):
        assert truth[0.95][0] > 15.0 and truth[0.95][0] > truth[0.3][0]
    if kind == "skew":
        assert 7.0 < abs(truth[0.95][1]) < 12.0
    if kind == "belt_slip":
        s = truth[0.95][2]
        drive = sc.PITCH * sc.M_PER_SU * s[CH["feeder_setpoint"]] / 60.0
        assert 0.93 < s[CH["belt_speed"]] / drive < 0.98


def test_glue_miss_dips_glue_pressure():
    sim = LineSim(tiny(), seed=12)
    before = [sim.step().sensors[CH["glue_pressure"]] for _ in range(round(6 * sim.cfg.fps))]
    sim.inject_fault("glue_miss", 2.5)
    during = []
    while sim.active_fault is None or sim.t < sim.active_fault.precursor_start + 0.6:
        during.append(sim.step().sensors[CH["glue_pressure"]])
    assert min(during[-12:]) < np.mean(before[-50:]) - 0.08


def _jam_run(limit_at: float | None, limit_pct: float, kind: str = "flap_rise"):
    """Inject ``kind``; set the limit ``limit_at`` s into the precursor (None: never)."""
    cfg = tiny()
    sim = LineSim(cfg, seed=21)
    start_fault(sim, kind, precursor=2.5)
    ev = sim.active_fault
    frames = []
    while sim.t < ev.jam_at + 3.0:
        if limit_at is not None and sim.t >= ev.precursor_start + limit_at - 1e-9:
            sim.set_speed_limit(limit_pct)
            limit_at = None
        frames.append(sim.step())
    return sim, ev, frames


def test_jam_forms_without_a_slow_down():
    sim, ev, frames = _jam_run(None, 100.0)
    ev = sim.events[-1]
    assert ev.jam_onset == pytest.approx(ev.jam_at, abs=0.11)
    assert ev.stopped_at is not None and ev.stopped_at - ev.jam_onset < 1.0
    assert ev.line_stopped_until == pytest.approx(ev.stopped_at + sim.cfg.jam_stop_seconds)
    assert sim.jams == 1 and sim.state == "stopped"
    running = [f.sensors[CH["motor_current"]] for f in frames if f.t < ev.precursor_start + 1]
    jamming = [
        f.sensors[CH["motor_current"]] for f in frames if ev.jam_onset <= f.t < ev.stopped_at
    ]
    assert max(jamming) > np.mean(running) + 3.0  # current spikes while cartons pile up
    stopped = [f for f in frames if f.t >= ev.stopped_at]
    assert stopped and all(f.state == "stopped" for f in stopped)
    assert all(f.sensors[CH["belt_speed"]] == 0.0 for f in stopped)
    cartons = {c.id: c for c in sim.cartons()}
    stuck = cartons[ev.carton]
    assert stuck.status == "stuck" and stuck.front >= sc.END_X - 1.0
    assert any(c.status == "piled" for c in cartons.values())
    n = len(sim.events)
    while sim.state == "stopped":
        sim.step()
    assert sim.t == pytest.approx(ev.line_stopped_until, abs=0.06)
    assert all(c.status in ("belt", "outfeed") for c in sim.cartons())  # the jam was cleared
    assert len(sim.events) == n


def test_slowing_down_in_time_averts_the_jam():
    mf = tiny().mitigation_fraction
    sim, ev, frames = _jam_run(0.0, 100.0 - 100.0 * mf - 2.0)
    ev = sim.events[-1]
    assert ev.averted and ev.jam_onset is None and ev.line_stopped_until is None
    assert sim.jams == 0
    assert all(f.state == "running" for f in frames)
    assert all(f.sensors[CH["belt_speed"]] > 0.1 for f in frames)
    assert sim.active_fault is None  # the precursor resolved within about a second
    assert ev.mitigated_at - ev.precursor_start < 0.5


def test_slowing_down_too_little_or_too_late_does_not_help():
    mf = tiny().mitigation_fraction
    sim, _, _ = _jam_run(0.0, 100.0 - 100.0 * mf + 5.0)  # not slow enough
    assert sim.jams == 1 and not sim.events[-1].averted
    lead = tiny().mitigation_lead_seconds
    sim, _, _ = _jam_run(2.5 - lead + 0.1, 50.0)  # slow enough, but after the lead time
    assert sim.jams == 1 and not sim.events[-1].averted


def test_inject_fault_rejects_unknown_types():
    sim = LineSim(tiny(), seed=1)
    with pytest.raises(ValueError, match="unknown fault type"):
        sim.inject_fault("gremlins")
