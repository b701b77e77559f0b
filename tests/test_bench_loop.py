"""``foresight bench loop``: the closed loop with and without the monitor, and its accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foresight.bench import loop
from foresight.bench.faults import bench_model
from foresight.config import load_config
from foresight.errors import InputError
from foresight.model.checkpoint import load_model, save_model

SAMPLES = Path(__file__).parent.parent / "data_samples"
SHIFT_S = 30.0
#: a seed whose 30 s shift at 5 faults per shift jams at least once without the monitor
SEED = 20_000


def _cfg():
    return load_config(preset="tiny", environ={})


def _fault(ps, jam_at, onset=None, mitigated=None, until=None):
    return {
        "precursor_start": ps,
        "jam_at": jam_at,
        "jam_onset": onset,
        "mitigated_at": mitigated,
        "line_stopped_until": until,
    }


def test_classify_slowdowns_and_fault_outcomes():
    faults = [
        _fault(10.0, 13.0, mitigated=11.5),  # averted
        _fault(40.0, 42.0, onset=42.0, until=103.0),  # jammed
        _fault(200.0, 203.0),  # still under way when the shift ended
    ]
    spans = [
        (11.0, 20.0),  # starts in the first precursor: useful
        (41.0, 43.0),  # starts in the second, which jammed anyway: useful
        (50.0, 55.0),  # starts while the jam stops the line: late
        (5.0, 12.0),  # starts before any precursor, overlaps one: unnecessary
        (150.0, 160.0),  # nothing near it: unnecessary
    ]
    acc = loop.classify(faults, spans)
    assert acc["kinds"] == ["useful", "useful", "late", "unnecessary", "unnecessary"]
    assert (acc["faults"], acc["averted"], acc["jammed"], acc["open"]) == (3, 1, 1, 1)
    assert acc["jammed_though_slowed"] == 1
    assert (acc["useful"], acc["late"], acc["unnecessary"]) == (2, 1, 2)


def test_slowdown_spans_end_when_the_limit_is_back_at_100():
    cmds = [
        {"t": 1.0, "reason": "slowdown", "pct": 70.0},
        {"t": 6.0, "reason": "ramp", "pct": 85.0},
        {"t": 8.0, "reason": "restore", "pct": 100.0},
        {"t": 20.0, "reason": "slowdown", "pct": 70.0},
    ]
    assert loop.slowdown_spans(cmds, 30.0) == [(1.0, 8.0), (20.0, 30.0)]


def test_model_line_comes_from_the_training_footage(tiny_model):
    sim = json.loads((SAMPLES / "normal" / "sim_config.json").read_text())
    line = loop.model_line(tiny_model)
    assert line.sim["appearance_seed"] == sim["appearance_seed"]
    assert line.sim["fps"] == sim["fps"] and sim["seed"] in line.training_seeds
    assert "sim_config.json" in line.source
    assert loop.model_line(tiny_model, appearance_seed=77).sim["appearance_seed"] == 77
    seeds = loop.shift_seeds(sim["seed"] - 1, 3, line.training_seeds)
    assert sim["seed"] not in seeds and len(set(seeds)) == 3
    with pytest.raises(InputError, match="faults per hour"):
        loop.shift_sim(_cfg().sim, line, 5, faults_per_hour=10_000.0)


def test_a_monitor_that_never_alarms_leaves_the_shift_unchanged(tiny_model, tmp_path):
    bundle = load_model(tiny_model)
    never = {"watch": 1e8, "alarm": 1e9, "clear": 1e8, "baseline": 0.0}
    bundle.card["calibration"]["thresholds"] = never
    model = save_model(bundle, tmp_path / "never")
    line = loop.model_line(model)
    sim = loop.shift_sim(_cfg().sim, line, SEED, faults_per_hour=5 / (SHIFT_S / 3600))
    r = loop.run_shift(_cfg(), sim, SHIFT_S, tmp_path / "shift", model)
    wo, w = r["without"], r["with"]
    assert wo["jams"] >= 1  # the unmonitored line jams
    # Without a single command the two runs are the same line, frame for frame.
    assert w["fault_events"] == wo["fault_events"] and w["good"] == wo["good"]
    assert w["jams"] == wo["jams"] == w["jammed"]
    assert w["slowdowns"] == w["averted"] == w["unnecessary"] == 0 and w["held_back"] == 0
    # Lock-step: every camera frame taken, every model tick served.
    c = w["counters"]
    assert c["frames"] == round(SHIFT_S * sim.fps)
    assert c["steps"] >= 0.8 * SHIFT_S * 10.0  # the tiny model runs at 10 fps
    assert c["dropped_frames"] == c["skipped_ticks"] == w["lock"]["settle_timeouts"] == 0
    tot = loop.summarize([r])
    assert tot["prevented"] == 0.0 and tot["prevented_ci"][1] < 1.0
    assert tot["jams_without"] == tot["jams"] == wo["jams"]


def test_bench_slowdowns_reach_the_feeder_and_are_reported(tiny_model, tmp_path):
    hot = bench_model(tiny_model, tmp_path / "hot", hot=True)  # every score above the alarm
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Foresight benchmarks\n\n<!-- bench:sim -->\nkept\n<!-- /bench:sim -->\n")
    md, shifts, tot = loop.bench_loop(
        _cfg(),
        out,
        tmp_path / "work",
        hot,
        shifts=1,
        shift_hours=SHIFT_S / 3600,
        faults_per_shift=0,
        seed=SEED,
        command="foresight bench loop --test",
    )
    w, wo = shifts[0]["with"], shifts[0]["without"]
    assert w["faults"] == wo["faults"] == 0
    assert w["slowdowns"] >= 1 and w["unnecessary"] == w["slowdowns"]
    # The limit reached the simulated feeder: fewer good cartons, and the difference is what
    # the limit held back (give or take the cartons still on the belt).
    assert w["held_back"] > 3 and w["good"] < wo["good"]
    assert abs((wo["good"] - w["good"]) - w["held_back"]) <= 3
    lat = shifts[0]["latency_ms"]
    assert lat["slow_confirmed"] and 0 < lat["slow_confirmed"][0] < 2000
    assert lat["slow_applied"] and lat["slow_decel"][0] >= lat["slow_applied"][0]
    assert tot["steps_per_s"] > 0 and tot["dropped"] == tot["skipped"] == 0
    text = out.read_text()
    assert "<!-- bench:sim -->\nkept" in text
    assert text.count("<!-- bench:loop -->") == 1 and "<!-- /bench:loop -->" in text
    assert "foresight bench loop --test" in md and "**Reduced scale**" in md
    assert "| 1 | 20000 | 0 | 0 | 0 | 0 |" in md and "| **total** |" in md
    assert "| jams prevented >= 90 % | n/a" in md
    row = next(x for x in md.splitlines() if x.startswith("| unnecessary slow-downs"))
    assert row.endswith("MISSED |")
    assert json.loads((tmp_path / "work" / "loop.json").read_text())["totals"]["slowdowns"] >= 1
