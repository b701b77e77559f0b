"""The combined Shewhart-EWMA score and the label-free choice of SKAB settings."""

from __future__ import annotations

import numpy as np
import pytest

from foresight.errors import InputError
from foresight.realdata import monitor as mon
from foresight.realdata.sensormodel import SensorModelConfig
from foresight.realdata.skab import SkabSettings
from foresight.realdata.skab_select import Grid, inject, select
from foresight.residuals.config import ResidualConfig

CFG = ResidualConfig(components=("latent", "sensor"), smooth_seconds=5.0, warmup_seconds=0.0)


def _features(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "pixel": np.zeros((n, 2, 0), np.float32),
        "latent": rng.standard_normal((n, 2)).astype(np.float32),
        "sensor": rng.standard_normal((n, 2, 3)).astype(np.float32),
    }


def test_combined_chart_alarms_at_once_on_a_big_step_and_is_the_ewma_otherwise():
    normal = _features(600, 0)
    cal = mon.calibrate([normal])
    test = _features(300, 1)
    test["latent"][200] += 30.0  # one sample far out
    plain_score, instant = mon.track(test, cal, CFG)
    margin = mon.shewhart_margin([normal], cal, CFG)
    assert 0.0 < margin < 20.0
    combined, instant2 = mon.track(test, cal, CFG.model_copy(update={"shewhart_margin": margin}))
    np.testing.assert_allclose(instant, instant2)
    # the EWMA is the same series underneath: the combined score is its max with instant - margin
    np.testing.assert_allclose(combined, np.maximum(plain_score, instant - margin), rtol=1e-6)
    assert combined[200] == pytest.approx(instant[200] - margin)
    assert combined[200] > 2 * plain_score[200]
    # on normal data each arm exceeds its 99th percentile about equally often
    s, i = mon.track(normal, cal, CFG)
    level = np.nanquantile(s, 0.99)
    assert np.mean(i - margin > level) == pytest.approx(0.01, abs=0.006)
    with pytest.raises(InputError, match="quantile"):
        mon.shewhart_margin([normal], cal, CFG, quantile=1.5)


def test_injected_fault_leaves_the_fit_rows_alone_and_labels_its_span():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1150, 8)) * np.arange(1, 9)
    for seed in range(20):
        f = inject(x, 400, np.random.default_rng(seed))
        np.testing.assert_array_equal(f.x[:400], x[:400])
        (run,) = np.flatnonzero(np.diff(np.r_[0, f.anomaly, 0]) == 1)
        start, stop = run, run + int(f.anomaly.sum())
        assert 500 <= start <= 750 and 150 <= stop - start <= 400 or stop == 1120
        assert np.flatnonzero(f.changepoint).tolist() == [start, stop]
        moved = np.abs(f.x - x) > 1e-9
        assert not moved[:start].any() and not moved[stop:].any()
        chans = np.flatnonzero(moved.any(0))
        assert 1 <= chans.size <= 4
        peak = np.abs(f.x - x)[start:stop, chans].max(0) / x[:400, chans].std(0)
        assert np.all((peak > 0.99) & (peak < 5.01))


def test_select_returns_the_best_trial_of_each_stage():
    rng = np.random.default_rng(0)
    raw = [np.cumsum(rng.standard_normal((600, 3)), 0) * 0.05 + rng.standard_normal((600, 3))]
    held = raw * 2
    train = [mon.Normaliser.fit(p[:300])(p) for p in raw]
    base = SkabSettings(
        model=SensorModelConfig(horizons=(1, 3)).tiny(), finetune_steps=0, residuals=CFG
    )
    grid = Grid(
        inputs=((None, 0.0), (3.0, 0.5)),
        horizons=((1, 3),),
        spans=(2.0, 5.0),
        smooth=(2.0,),
        shewhart=(None,),
        on_delay=(0.0,),
        off_delay=(5.0,),
        min_slowdown=(10.0,),
        per_hour=(1.0, 4.0),
    )
    chosen, trials = select(train, held, base, fit_rows=300, copies=2, grid=grid)
    assert [t["stage"] for t in trials] == [0, 0, 1, 1, 2, 2]
    zero = max((t for t in trials if t["stage"] == 0), key=lambda t: t["objective"])
    assert chosen.model.input_clip == zero["input_clip"]
    assert chosen.model.offset_noise == zero["offset_noise"]
    one = max((t for t in trials if t["stage"] == 1), key=lambda t: t["objective"])
    two = max((t for t in trials if t["stage"] == 2), key=lambda t: t["objective"])
    assert chosen.level.span == one["span"] and chosen.per_hour == two["per_hour"]
    assert all(t["objective"] == pytest.approx(t["f1"] + t["nab_standard"] / 100) for t in trials)
