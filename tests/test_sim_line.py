"""The live simulated line: contract, determinism, sensors, PLC limit, nuisances and flicker."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from foresight.config import load_config
from foresight.schema import LINE_STATES, SENSOR_CHANNELS
from foresight.sim import scene as sc
from foresight.sim.config import SimConfig
from foresight.sim.line import LineSim, SimFrame
from foresight.sim.sensors import DriveState, SensorModel

CH = {name: i for i, name in enumerate(SENSOR_CHANNELS)}


def tiny(**update) -> SimConfig:
    """The tiny preset's [sim] table with ``update`` applied."""
    return load_config(preset="tiny").sim.model_copy(update=update)


def run(sim: LineSim, seconds: float) -> list[SimFrame]:
    return [sim.step() for _ in range(round(seconds * sim.cfg.fps))]


def digest(frames: list[SimFrame]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f.frame.tobytes())
        h.update(f.sensors.tobytes())
        h.update(f.state.encode())
    return h.hexdigest()


def test_step_returns_rgb_frame_sensor_row_and_state():
    cfg = tiny()
    sim = LineSim(cfg, seed=1)
    frames = run(sim, 3.0)
    for k, f in enumerate(frames):
        assert f.t == pytest.approx(k / cfg.fps)
        assert f.frame.shape == (cfg.height, cfg.width, 3) and f.frame.dtype == np.uint8
        assert f.sensors.shape == (len(SENSOR_CHANNELS),) and f.sensors.dtype == np.float32
        assert f.state in LINE_STATES
    assert sim.t == pytest.approx(frames[-1].t)
    last = frames[-1].sensors
    # after the 2 s ramp: nominal 120 cartons/min = one 0.15 m pitch every 0.5 s = 0.3 m/s
    assert last[CH["feeder_setpoint"]] == pytest.approx(cfg.setpoint_cpm)
    assert last[CH["belt_speed"]] == pytest.approx(0.3, abs=0.01)
    assert 3.0 < last[CH["motor_current"]] < 6.0
    assert last[CH["glue_pressure"]] == pytest.approx(2.5, abs=0.15)
    # frames change from one to the next (moving belt, noise), but not wildly
    a, b = frames[-2].frame.astype(int), frames[-1].frame.astype(int)
    assert 0 < np.abs(a - b).mean() < 20


def test_same_seed_same_footage_different_seed_different():
    cfg = tiny(faults_per_hour=600.0, nuisance_per_hour=600.0)
    a, b, c = LineSim(cfg, seed=7), LineSim(cfg, seed=7), LineSim(cfg, seed=8)
    fa, fb, fc = run(a, 25.0), run(b, 25.0), run(c, 25.0)
    assert digest(fa) == digest(fb)
    assert a.events == b.events and a.state_segments == b.state_segments
    assert a.events, "the run should contain a fault so that labels are compared too"
    assert digest(fa) != digest(fc)


def test_counterfactual_render_does_not_disturb_the_random_streams():
    cfg = tiny(faults_per_hour=600.0)
    a, b = LineSim(cfg, seed=3), LineSim(cfg, seed=3)
    for _ in range(300):
        fa, fb = a.step(), b.step()
        b.render_counterfactual()
        b.render_latest(noise=False)
        assert np.array_equal(fa.frame, fb.frame)


def test_feeder_setpoint_and_belt_follow_the_plc_speed_limit():
    cfg = tiny(speed_changes_per_hour=0.0, faults_per_hour=0.0)
    sim = LineSim(cfg, seed=2)
    before = run(sim, 4.0)
    op = sim.operator_setpoint
    v0 = np.mean([f.sensors[CH["belt_speed"]] for f in before[-20:]])
    sim.set_speed_limit(50.0)
    after = run(sim, 2.0)
    sp = np.array([f.sensors[CH["feeder_setpoint"]] for f in after])
    assert sp[0] < op  # reacts on the very next frame ...
    assert sp[0] > 0.5 * op  # ... with a ramp, not a jump
    k = round(0.5 * cfg.fps)
    assert np.allclose(sp[k:], 0.5 * op, rtol=1e-3)  # settled within 0.5 s
    assert sim.applied_setpoint == pytest.approx(0.5 * op, rel=1e-3)
    assert sim.operator_setpoint == op
    v1 = np.mean([f.sensors[CH["belt_speed"]] for f in after[k:]])
    assert v1 / v0 == pytest.approx(0.5, abs=0.03)
    cur = [f.sensors[CH["motor_current"]] for f in after[k:]]
    assert np.mean(cur) < np.mean([f.sensors[CH["motor_current"]] for f in before[-20:]]) - 0.5
    sim.set_speed_limit(150.0)  # clipped to 100 %
    run(sim, 1.0)
    assert sim.applied_setpoint == pytest.approx(op)
    with pytest.raises(ValueError):
        sim.set_speed_limit(float("nan"))


def test_photo_eye_counts_exactly_the_cartons_crossing_it():
    cfg = tiny(faults_per_hour=300.0)
    sim = LineSim(cfg, seed=4)
    fronts: dict[int, float] = {}
    crossings = 0
    counts = []
    for _ in range(round(40 * cfg.fps)):
        f = sim.step()
        for c in sim.cartons():
            if fronts.get(c.id, -1e9) < sc.EYE_X <= c.front:
                crossings += 1
            fronts[c.id] = c.front
        counts.append(f.sensors[CH["photo_eye_count"]])
        assert counts[-1] == crossings
    assert crossings > 20
    assert np.all(np.diff(counts) >= 0)
    assert sim.good_cartons <= crossings


def test_belt_speed_is_zero_whenever_the_line_is_stopped():
    cfg = tiny(faults_per_hour=600.0)
    sim = LineSim(cfg, seed=5)
    frames = run(sim, 40.0)
    stopped = [f for f in frames if f.state == "stopped"]
    assert stopped, "a jam should have stopped the line"
    for f in stopped:
        assert f.sensors[CH["belt_speed"]] == 0.0
        assert f.sensors[CH["feeder_setpoint"]] == 0.0
    assert sim.jams >= 1


def test_bearing_wear_raises_vibration_over_hours():
    model = SensorModel(np.random.default_rng(0), 0.04, wear_per_hour=0.5, v_nom=0.3)

    def mean_vib(t: float) -> float:
        d = DriveState(t, 0.3, 0.3, True, 10, 0.0, 0.0, 0, 0.0, 0, 0, 120.0)
        return float(np.mean([model.sample(d)[CH["vibration_rms"]] for _ in range(500)]))

    assert mean_vib(4 * 3600.0) - mean_vib(0.0) == pytest.approx(2.0, abs=0.2)


def test_nuisances_change_pixels_but_are_not_faults():
    cfg = tiny(faults_per_hour=0.0, nuisance_per_hour=600.0)
    sim = LineSim(cfg, seed=4)
    seen = 0
    for _ in range(round(60 * cfg.fps)):
        f = sim.step()
        for d in sim.disturbances:
            if abs(f.t - (d.start + d.duration / 2)) < 0.5 / cfg.fps:
                clean = sim.render_latest(nuisances=False)
                changed = np.any(f.frame != clean, axis=2).mean()
                assert changed > 0.02, d
                seen += 1
    kinds = {d.kind for d in sim.disturbances}
    assert seen >= 3 and kinds == {"hand", "shadow"}
    assert all(1.0 <= d.duration <= 3.0 for d in sim.disturbances)
    assert sim.events == [] and sim.jams == 0


def test_flicker_modulates_the_whole_picture():
    cfg = tiny(faults_per_hour=0.0, nuisance_per_hour=0.0, noise_sigma=0.0, flicker_amplitude=0.04)
    sim = LineSim(cfg, seed=9)
    gains, levels = [], []
    for _ in range(round(10.0 * cfg.fps)):
        f = sim.step()
        gains.append(sim.light_gain[1])
        levels.append(f.frame[: cfg.height // 8, :, 1].mean())  # static guard panel at the top
    gains, levels = np.array(gains), np.array(levels)
    assert 0.01 < gains.std() < 0.06
    assert np.corrcoef(gains, levels)[0, 1] > 0.95
    steady = tiny(
        faults_per_hour=0.0, nuisance_per_hour=0.0, noise_sigma=0.0, flicker_amplitude=0.0
    )
    flat = [f.frame[: cfg.height // 8, :, 1].mean() for f in run(LineSim(steady, seed=9), 3.0)]
    assert np.std(flat) < 1e-9


def test_lighting_change_is_a_slow_drift():
    cfg = tiny(
        faults_per_hour=0.0, nuisance_per_hour=0.0, flicker_amplitude=0.0, lighting_change_at=5.0
    )
    sim = LineSim(cfg, seed=1)
    run(sim, 5.0)
    g0 = np.array(sim.light_gain)
    run(sim, 10.0)
    g1 = np.array(sim.light_gain)
    assert np.all(np.abs(g1 - g0) < 0.02)  # 10 s into a 150 s change: barely moved
    assert np.any(np.abs(g1 - g0) > 0.0)


def test_appearance_seed_changes_the_line_not_the_physics():
    a = LineSim(tiny(appearance_seed=0), seed=1)
    b = LineSim(tiny(appearance_seed=11), seed=1)
    fa, fb = run(a, 4.0), run(b, 4.0)
    assert np.abs(fa[-1].frame.astype(int) - fb[-1].frame.astype(int)).mean() > 10
    assert a.look != b.look
    sa = np.array([f.sensors[CH["feeder_setpoint"]] for f in fa])
    sb = np.array([f.sensors[CH["feeder_setpoint"]] for f in fb])
    assert np.array_equal(sa, sb)


def test_changeover_stops_the_line_and_changes_product():
    cfg = tiny(faults_per_hour=0.0, changeovers_per_hour=60.0, changeover_seconds=8.0)
    sim = LineSim(cfg, seed=3)
    products = set()
    states = []
    for _ in range(round(150 * cfg.fps)):
        f = sim.step()
        states.append(f.state)
        products.update(c.product for c in sim.cartons())
        if f.state == "changeover" and f.sensors[CH["belt_speed"]] == 0.0:
            assert f.sensors[CH["feeder_setpoint"]] == 0.0
    assert "changeover" in states
    assert len(products) >= 2
