"""Sensor-only world model, the monitor glue, input errors and the data-backed protocols."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight.errors import InputError
from foresight.realdata import monitor as mon
from foresight.realdata.sensormodel import (
    SensorModelConfig,
    augment,
    fit_model,
    forecast_series,
    init_carry,
    make_model,
    observe,
    split_model,
)
from foresight.residuals.config import ResidualConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = SensorModelConfig(horizons=(1, 3)).tiny()


def _ar_series(n: int, s: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, s), np.float32)
    for t in range(1, n):
        x[t] = 0.9 * x[t - 1] + 0.3 * rng.standard_normal(s)
    return x


def test_scan_equals_stepping_and_training_lowers_the_loss():
    x = _ar_series(200, 3, 0)
    cfg = SensorModelConfig(hidden=8, horizons=(1, 3), steps=60, batch=8, window=32, burn_in=2)
    fit = fit_model([x], cfg, lr=1e-2)
    assert np.mean(fit.losses[-10:]) < np.mean(fit.losses[:10])
    mean, logvar = forecast_series(fit.graphdef, fit.params, x[:20])
    assert mean.shape == logvar.shape == (20, 2, 3)
    carry = init_carry(8)
    for t in range(20):
        carry, (m, lv) = observe(fit.graphdef, fit.params, carry, x[t : t + 1])
        np.testing.assert_allclose(np.asarray(m[0]), mean[t], atol=1e-5)
    np.testing.assert_allclose(np.asarray(lv[0]), logvar[19], atol=1e-5)


def test_clipped_inputs_forecast_a_change_from_the_true_level():
    # Beyond the clip the GRU reads the same input, so the forecast moves with the level
    # one for one (a change from the true x[t]); without the clip it does not.
    x = _ar_series(200, 2, 1)
    cfg = SensorModelConfig(hidden=8, horizons=(1, 3), steps=20, batch=8, window=32, burn_in=2)
    clipped = replace(cfg, input_clip=3.0, offset_noise=1.0)
    outs = {}
    for name, c in (("plain", cfg), ("clipped", clipped)):
        fit = fit_model([x], c, lr=1e-2)
        assert np.isfinite(fit.losses).all()
        far = np.zeros((1, 2), np.float32) + np.array([[5.0, 0.0]], np.float32)
        farther = far + np.array([[4.0, 0.0]], np.float32)
        carry = init_carry(8)
        _, (m1, _) = observe(fit.graphdef, fit.params, carry, far)
        _, (m2, _) = observe(fit.graphdef, fit.params, carry, farther)
        outs[name] = np.asarray(m2 - m1)[0, :, 0]
    np.testing.assert_allclose(outs["clipped"], 4.0, atol=1e-5)
    assert np.abs(outs["plain"] - 4.0).max() > 1e-3


def test_level_offsets_move_inputs_and_targets_together():
    xs = jnp.asarray(_ar_series(50, 3, 2)[None].repeat(4, 0))
    key = jax.random.PRNGKey(0)
    plain = SensorModelConfig(input_noise=0.1)
    noisy0, target0 = augment(xs, key, plain)
    np.testing.assert_array_equal(np.asarray(target0), np.asarray(xs))
    noisy, target = augment(xs, key, replace(plain, offset_noise=2.0))
    shift = np.asarray(target - xs)
    assert np.abs(shift).mean() > 0.5  # a real offset of about 2 sd ...
    # ... constant along time
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-5)
    assert np.ptp(shift[:, 0], axis=0).min() > 0.1  # ... and different per window
    np.testing.assert_allclose(np.asarray(noisy - target), np.asarray(noisy0 - xs), atol=1e-5)


def test_tracker_and_engine_flag_an_injected_shift():
    x = _ar_series(900, 2, 1)
    cfg = SensorModelConfig(hidden=8, horizons=(1, 3), steps=80, batch=8, window=32, burn_in=2)
    fit = fit_model([x[:500]], cfg, lr=1e-2)
    test = x.copy()
    test[700:720, 0] += 4.0  # a step far beyond normal noise
    feats = []
    for series in (x, test):
        mean, logvar = forecast_series(fit.graphdef, fit.params, series)
        feats.append(mon.due_features(series, mean, logvar, (1, 3)))
    assert feats[0]["sensor"].shape == (900, 2, 2) and feats[0]["pixel"].shape == (900, 2, 0)
    assert np.isnan(feats[0]["sensor"][:3, 1]).all()  # horizon 3 not due before sample 3
    cal = mon.calibrate([{k: v[500:700] for k, v in feats[0].items()}])
    res = ResidualConfig(components=("latent", "sensor"), smooth_seconds=0.0, warmup_seconds=0)
    normal = mon.track(feats[0], cal, res)[0]
    faulty = mon.track(feats[1], cal, res)[0]
    alarm_cfg = mon.alarm_config(5.0)
    thr, _ = mon.thresholds(alarm_cfg, [normal[500:700]])
    alarm, starts = mon.alarms(alarm_cfg, thr, faulty)
    assert alarm[700:703].any()
    assert faulty[700] > np.nanmax(normal[500:700])


def _correlated(n: int, seed: int) -> np.ndarray:
    """Two channels bound by one relation (x1 = 0.8 x0 + noise), plus an independent third."""
    rng = np.random.default_rng(seed)
    x0 = _ar_series(n, 1, seed)[:, 0]
    x1 = 0.8 * x0 + 0.1 * rng.standard_normal(n)
    return np.stack([x0, x1, rng.standard_normal(n)], 1).astype(np.float32)


def test_level_head_learns_the_relation_and_one_channel_means_the_normal_mean():
    x = _correlated(600, 2)
    head = mon.LevelHead.fit(x[:400], mon.LevelConfig(span=1.0, ridge=0.1, shrink=0.0))
    assert head.weights[1, 0] == pytest.approx(0.8, abs=0.05)  # x1 <- x0
    assert np.all(np.diag(head.weights) == 0) and abs(head.weights[:2, 2]).max() < 0.05
    e = head.residuals(x[400:])  # unseen normal rows stay near unit scale
    assert 0.7 < e.std() < 1.4
    one = mon.LevelHead.fit(x[:400, :1], mon.LevelConfig(span=1.0))
    z = (x[400:, :1] - x[:400, :1].mean()) / x[:400, :1].std()
    np.testing.assert_allclose(one.residuals(x[400:, :1]), z, atol=1e-4)
    with pytest.raises(InputError, match="level head"):
        mon.LevelConfig(span=0.5)


def test_level_row_keeps_a_sustained_shift_alarmed_where_a_forecaster_adapts():
    # A persistence forecaster (mean = last sample) adapts to a step within one sample; the level
    # head's row keeps the broken relation in alarm for as long as it lasts.
    x = _correlated(1200, 3)
    test = x.copy()
    test[900:, 1] += 1.5  # x1 leaves its relation to x0 for good (about 5 sigma of the noise)
    cfg = mon.LevelConfig(span=5.0, ridge=0.1, shrink=0.1)
    head = mon.LevelHead.fit(x[:500], cfg)

    def feats(series: np.ndarray) -> dict[str, np.ndarray]:
        mean = np.concatenate([series[:1], series[:-1]])[:, None]  # forecast made one step ago
        f = mon.due_features(series, mean, np.zeros_like(mean), (1,))
        return mon.with_level(f, head, series)

    normal, faulty = feats(x), feats(test)
    assert faulty["sensor"].shape == (1200, 2, 3) and faulty["latent"].shape == (1200, 2)
    cal = mon.calibrate([{k: v[500:900] for k, v in normal.items()}])
    res = ResidualConfig(components=("latent", "sensor"), smooth_seconds=2.0, warmup_seconds=0)
    alarm_cfg = mon.alarm_config(1.0, off_delay_s=5.0)
    thr, _ = mon.thresholds(alarm_cfg, [mon.track(normal, cal, res)[0][500:900]])
    alarm, _ = mon.alarms(alarm_cfg, thr, mon.track(faulty, cal, res)[0])
    assert alarm[920:].mean() > 0.95  # the whole shift, not only its onset
    assert alarm[500:900].mean() < 0.05
    due = faulty["sensor"][:, 0, 1]  # the forecaster's own residual on x1: only the step itself
    assert np.nanmax(due[905:]) < due[900]


def test_bad_config_and_bad_input_are_one_line_errors():
    with pytest.raises(InputError, match="horizons"):
        SensorModelConfig(horizons=(0,))
    with pytest.raises(InputError, match="input_clip"):
        SensorModelConfig(input_clip=0.0)
    with pytest.raises(InputError, match="offset_noise"):
        SensorModelConfig(offset_noise=-1.0)
    with pytest.raises(InputError, match="NaN"):
        mon.Normaliser.fit(np.array([[1.0], [np.nan], [2.0]]), "x.csv")
    with pytest.raises(InputError):
        make_model(0, TINY)
    graphdef, params = split_model(make_model(2, TINY))
    with pytest.raises(InputError, match=r"\(T, S\)"):
        forecast_series(graphdef, params, np.zeros(5))


def test_skab_bad_files(tmp_path):
    from foresight.realdata.skab import COLUMNS, fault_files, load_file

    header = "datetime;" + ";".join(COLUMNS) + ";anomaly;changepoint"
    rows = [f"2020-03-09 10:14:{i % 60:02d};" + ";".join(["1.0"] * 8) + ";0;0" for i in range(3)]
    p = tmp_path / "v" / "0.csv"
    p.parent.mkdir()
    p.write_text(header.replace(";Current", "") + "\n")
    with pytest.raises(InputError, match=r"0\.csv: missing column\(s\) Current"):
        load_file(p)
    p.write_text("\n".join([header, rows[0], rows[1].replace("1.0", "nan", 1)]) + "\n")
    with pytest.raises(InputError, match=r"0\.csv: NaN"):
        load_file(p)
    with pytest.raises(InputError, match="no fault folders"):
        fault_files(tmp_path / "v")


def test_nab_and_tep_bad_input(tmp_path):
    from foresight.realdata.common import data_dir
    from foresight.realdata.nab import load_corpus
    from foresight.realdata.tep import load_run

    with pytest.raises(InputError, match="data folder not found"):
        data_dir(tmp_path / "absent", "nab")
    (tmp_path / "labels").mkdir()
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"c/a.csv": []}))
    (tmp_path / "data" / "c" / "a.csv").write_text("timestamp,value\n2014-01-01 00:00:00,x\n")
    with pytest.raises(InputError, match=r"a\.csv: NaN or non-numeric value \(line 2\)"):
        load_corpus(tmp_path)
    bad = tmp_path / "d00_te.dat"
    bad.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(InputError, match="expected 52 columns"):
        load_run(bad)


def test_commands_register_on_the_bench_parser():
    from foresight.realdata.commands import register_all

    parser = argparse.ArgumentParser()
    bsub = parser.add_subparsers(dest="bench_command")
    register_all(bsub)
    args = parser.parse_args(["tep", "--data", "x", "--json", "o.json"])
    assert args.data == "x" and args.json == "o.json" and callable(args.func)
    assert parser.parse_args(["skab"]).benchmarks == "BENCHMARKS.md"


def _need(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real benchmark data absent: {path} (see issue 7)")
    return path


def test_tep_pca_reproduces_the_quoted_baseline():
    # The README beside the data quotes PCA (9 components, 99 % limits, fit on d00.dat):
    # false alarms on d00_te T2 2.1 %, Q 5.2 %; fault 4 MDR T2 0.901, Q 0.005.
    from foresight.realdata.tep import Pca, load_run

    root = _need("tep")
    pca = Pca(load_run(root / "d00.dat", transposed=True), 9, 0.99)
    t2, q = pca.alarms(load_run(root / "d00_te.dat"))
    assert t2.mean() == pytest.approx(0.021, abs=0.002)
    assert q.mean() == pytest.approx(0.052, abs=0.002)
    t2, q = pca.alarms(load_run(root / "d04_te.dat"))
    assert 1 - t2[160:].mean() == pytest.approx(0.901, abs=0.002)
    assert 1 - q[160:].mean() == pytest.approx(0.005, abs=0.002)


def test_skab_and_nab_real_files_load():
    from foresight.realdata.nab import load_corpus, published
    from foresight.realdata.skab import fault_files, load_file

    skab = _need("skab")
    files = fault_files(skab)
    f = load_file(files[0])
    assert f.x.shape[1] == 8 and f.anomaly.sum() > 0 and f.changepoint.sum() > 0
    nab = _need("nab")
    corpus = load_corpus(nab)
    assert sum(len(c.windows) for c in corpus) > 0
    pub = published(nab)
    assert pub["standard"]["nyc_taxi"]["numenta"] == pytest.approx(74.4)
    assert pub["standard"]["ec2_cpu_utilization_c6585a"]["raw:numenta"] == pytest.approx(-0.33)
