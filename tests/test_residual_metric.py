"""The default pixel residual (``hp``) ignores shadows and dimming but not a moved edge; the
occlusion gate withholds the score while much of the picture diverges at once."""

from __future__ import annotations

import numpy as np
import pytest

from foresight.pipeline import OcclusionGate
from foresight.residuals.config import ResidualConfig
from foresight.residuals.features import pixel_features


def _scene(size=64):
    """A textured grey wall with a row of dark cartons with flat lids."""
    rng = np.random.default_rng(0)
    img = np.full((size, size, 3), 0.55, np.float32) + rng.normal(0, 0.01, (size, size, 1))
    for x in range(4, size - 8, 10):
        img[30:40, x : x + 7] = 0.2
        img[28:30, x : x + 7] = 0.8  # lid
    return np.clip(img, 0, 1).astype(np.float32)


def _score(obs, pred, metric, block=2):
    f = pixel_features(
        obs[None], pred[None, None], np.zeros((1, 1, *pred.shape[:2], 1)), block, metric
    )
    return np.asarray(f)[0, 0]  # (R,) log residual per region


def test_hp_is_blind_to_a_soft_shadow_but_sees_a_rising_lid():
    pred = _scene()
    yy, xx = np.mgrid[0:64, 0:64]
    shadow = 1 - 0.35 * np.exp(-((xx - 30) ** 2 + (yy - 32) ** 2) / (2 * 12.0**2))
    shaded = (pred * shadow[..., None]).astype(np.float32)
    lid = pred.copy()
    lid[25:28, 24:27] = 0.8  # the lid of one carton rises by 3 px at one corner
    for metric in ("hp", "mse"):
        base = _score(pred, pred, metric)
        sh, li = _score(shaded, pred, metric).max(), _score(lid, pred, metric).max()
        if metric == "hp":
            # a 35 % shadow moves hp by less than the 3-px lid does, by a wide margin
            assert li - sh > 3.0, (li, sh)
        else:
            # the plain error sees the shadow about as strongly as the lid (why hp is default)
            assert sh > li - 1.0, (li, sh)
        assert base.max() < sh  # both differ from a perfect prediction


def test_occlusion_withholds_the_score_while_many_regions_diverge_and_briefly_after():
    cfg = ResidualConfig(occlusion_fraction=0.02, smooth_seconds=0.1)
    gate = OcclusionGate(cfg)
    assert not gate.update(0.0, 0.01)  # a few regions: a carton fault may look like this
    assert gate.update(0.1, 0.2)  # a hand covers a fifth of the picture
    assert gate.update(0.8, 0.0)  # gone, but held for 0.5 s and the smoothing's 0.3 s
    assert not gate.update(0.91, 0.0)
    # with 3 s forecasts, what was forecast while the hand was in view is due for 3 s more
    gate = OcclusionGate(cfg, horizon_s=3.0)
    assert gate.update(0.1, 0.2) and gate.update(3.39, 0.0) and not gate.update(3.41, 0.0)
    # a view that stays blocked (or a model that no longer fits the picture) is a health fault
    assert not any(gate.stuck(t / 10) for t in range(20, 120) if gate.update(t / 10, 0.5))
    assert gate.update(12.1, 0.5) and gate.stuck(12.1)
    # the hold for due forecasts does not count as blocked: gone at 12.6 s, not stuck after
    assert gate.update(13.0, 0.0) and not gate.stuck(13.0)
    assert not gate.update(15.5, 0.0)


def test_calibration_leaves_out_what_the_engine_ignores_while_a_restart_settles():
    from foresight.alarms.calibrate import settling
    from foresight.alarms.config import AlarmConfig
    from foresight.alarms.engine import Thresholds, run_engine

    fps, cfg = 10.0, AlarmConfig()
    rng = np.random.default_rng(0)
    t = np.arange(6000) / fps  # 10 min
    run = np.ones(t.size, bool)
    run[1000:1300] = False  # a 30 s stop
    scores = rng.normal(1.0, 0.3, t.size)
    scores[1300 : 1300 + 180] = 18.0  # 18 s of ramp-up transient after the restart
    scores[~run] = np.nan
    held = settling(cfg, t, scores, run, band=5.0)
    # from the restart through the transient and 3 s of calm (calm from step 1480, 3 s reached
    # on step 1510, which is still held); nothing before the stop
    assert np.flatnonzero(held).tolist() == list(range(1300, 1511))
    # the engine agrees: a score far above alarm right after the settling alarms at once
    thr = Thresholds(watch=5.0, alarm=10.0, clear=7.0, baseline=1.0)
    hot = scores.copy()
    hot[1511:1521] = 50.0
    _, alarm, events = run_engine(cfg, thr, t, hot, running=run)
    starts = [at for at, c in events if c.reason == "slowdown"]
    assert starts == [pytest.approx(t[1511] + cfg.on_delay_s)]
    # never calm: the cap (settle_max_s after the last stopped step)
    scores[1300 : 1300 + 1500] = 18.0
    held = settling(cfg, t, scores, run, band=5.0)
    assert held.sum() == round((cfg.settle_max_s - 0.1) * fps)


def test_a_commanded_speed_change_withholds_the_score_for_one_horizon():
    from foresight.pipeline import SpeedChangeGate

    cfg = ResidualConfig(smooth_seconds=0.1)  # command channel: feeder_setpoint
    gate = SpeedChangeGate(cfg, ("belt_speed", "feeder_setpoint"), horizon_s=3.0)
    raw = np.array([0.30, 120.0])
    steady = [gate.update(k / 10, raw * [1.0 + 0.01 * (k % 2), 1.0]) for k in range(20)]
    assert not any(steady)  # the measured belt speed wobbles: not a command
    assert gate.update(2.0, np.array([0.30, 112.5]))  # the operator slows the line 6 %
    assert gate.update(5.29, np.array([0.28, 112.5]))  # forecasts from before are due until 5.3 s
    assert not gate.update(5.31, np.array([0.28, 112.5]))
    assert not gate.update(5.4, np.array([0.28, np.nan]))  # a missing value is not a change
    assert not gate.update(5.5, np.array([0.28, 112.5]))
    # a model without the channel (video only, or other tags) is never gated
    blind = SpeedChangeGate(cfg, ("belt_speed",), horizon_s=3.0)
    assert not blind.update(0.0, np.array([0.3])) and not blind.update(0.1, np.array([0.1]))
