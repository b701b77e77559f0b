"""World model: shapes, determinism, save/restore, fine-tuning, checkpoint errors, resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from model_helpers import belt_clip, sources

from foresight.config import load_config
from foresight.errors import InputError
from foresight.model.checkpoint import build_model, check_compatible, load_model, read_card
from foresight.model.core import init_carry
from foresight.model.predictor import Predictor
from foresight.model.train import compute_norm, make_optimizer, train_model

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cfg():
    return load_config(preset="tiny", overrides=["train.max_steps=40", "train.val_every=20"])


@pytest.fixture(scope="module")
def trained(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    tr, va = sources(cfg.data.image_size, cfg.data.window)
    res = train_model(
        cfg.model, cfg.train, cfg.data.model_dump(mode="json"), tr, va, out, progress=False
    )
    return res


def test_forecast_shapes_and_determinism(cfg, trained):
    pred = Predictor.load(trained.path)
    frames, sens = belt_clip(12, cfg.data.image_size, 5)
    outs = []
    for _ in range(2):
        carry = pred.init_carry(1)
        for i in range(12):
            carry, fc = pred.step(carry, frames[None, i], sens[None, i])
        outs.append(jax.device_get(fc))
    n_h = len(pred.steps)
    s = cfg.data.image_size
    assert outs[0].frame.shape == (1, n_h, s, s, 3)
    assert outs[0].frame_logvar.shape == (1, n_h, s, s, 1)
    assert outs[0].sensors.shape == (1, n_h, 6)
    assert outs[0].z_mu.shape == (1, n_h, cfg.model.stoch)
    np.testing.assert_array_equal(outs[0].frame, outs[1].frame)
    f = outs[0].frame
    assert np.isfinite(f).all() and ((0 <= f) & (f <= 1)).all()


def test_save_restore_identical_predictions(cfg, trained, tmp_path):
    b = load_model(trained.path)
    p1 = Predictor(b)
    from foresight.model.checkpoint import save_model

    save_model(b, tmp_path / "copy")
    p2 = Predictor.load(tmp_path / "copy")
    frames, sens = belt_clip(8, cfg.data.image_size, 9)
    c1, c2 = p1.init_carry(1), p2.init_carry(1)
    for i in range(8):
        c1, f1 = p1.step(c1, frames[None, i], sens[None, i])
        c2, f2 = p2.step(c2, frames[None, i], sens[None, i])
    np.testing.assert_array_equal(np.asarray(f1.frame), np.asarray(f2.frame))
    np.testing.assert_array_equal(np.asarray(f1.sensors), np.asarray(f2.sensors))


def test_model_card_traces_training(trained):
    card = read_card(trained.path)
    assert card["format"] == "foresight-model/1"
    assert card["training"]["steps"] == trained.steps
    assert card["code_version"].startswith("0.")
    assert "val" in card["training"] and card["model"]["stoch"] == 8


def test_fine_tune_from_base(cfg, trained, tmp_path):
    tr, va = sources(cfg.data.image_size, cfg.data.window, seed=50)
    tcfg = cfg.train.model_copy(update={"max_steps": 5, "val_every": 5})
    res = train_model(
        cfg.model,
        tcfg,
        cfg.data.model_dump(mode="json"),
        tr,
        va,
        tmp_path / "ft",
        init=trained.path,
        progress=False,
    )
    card = read_card(res.path)
    assert card["training"]["init"] == str(trained.path)
    # Starting from the base, 5 steps keep the base's quality; from scratch they do not.
    scratch = train_model(
        cfg.model, tcfg, cfg.data.model_dump(mode="json"), tr, va, tmp_path / "sc", progress=False
    )
    assert np.mean(res.val["frame_model"]) < np.mean(scratch.val["frame_model"])
    # The base is the first candidate (step 0) and keeps its sensor scaling.
    hist = card["training"]["history"]
    assert [h["step"] for h in hist] == [0, 5] and all(0 < h["frame_objective"] for h in hist)
    base, tuned = load_model(trained.path), load_model(res.path)
    np.testing.assert_array_equal(np.asarray(tuned.norm.mean), np.asarray(base.norm.mean))
    np.testing.assert_array_equal(np.asarray(tuned.norm.std), np.asarray(base.norm.std))
    fresh = compute_norm(tr, cfg.model, tcfg.seed)  # what a fresh scaling of the new data gives
    assert not np.allclose(np.asarray(fresh.mean), np.asarray(base.norm.mean))


def test_fine_tune_runs_at_the_scaled_learning_rate(cfg):
    """Adam's first step moves each weight by the learning rate: a fine-tune's is scaled."""
    p, g = {"w": jax.numpy.ones(3)}, {"w": jax.numpy.asarray([0.5, -2.0, 1e-3])}
    moves = []
    for finetune in (False, True):
        tx = make_optimizer(cfg.train, finetune=finetune)
        upd, _ = tx.update(g, tx.init(p), p)
        moves.append(np.abs(np.asarray(upd["w"])))
    np.testing.assert_allclose(moves[1] / moves[0], cfg.train.finetune_lr_scale, rtol=1e-3)


def test_missing_and_corrupt_checkpoints(trained, tmp_path):
    with pytest.raises(InputError, match="no such model directory"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.json"):
        load_model(tmp_path / "empty")
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained.path, bad)
    for f in (bad / "weights").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="corrupt or unreadable weights"):
        load_model(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt model card"):
        load_model(bad)


def test_incompatible_checkpoint(cfg, trained, tmp_path):
    other = cfg.model.model_copy(update={"deter": 48})
    card = read_card(trained.path)
    with pytest.raises(InputError, match="model.deter is 32 there but 48"):
        check_compatible(card, other, cfg.data.model_dump(mode="json"), "m")
    tr, va = sources(cfg.data.image_size, cfg.data.window)
    with pytest.raises(InputError, match="incompatible checkpoint"):
        train_model(
            other,
            cfg.train,
            cfg.data.model_dump(mode="json"),
            tr,
            va,
            tmp_path / "x",
            init=trained.path,
            progress=False,
        )


def test_initial_carry_and_divisibility(cfg):
    m = build_model(cfg.model, 32, 6)
    c = init_carry(m, 3, 32)
    assert c.h.shape == (3, 32) and np.isnan(np.asarray(c.raw)).all()
    with pytest.raises(ValueError, match="divisible"):
        build_model(cfg.model, 30, 6)


def test_parameter_ema_is_what_is_validated_and_saved(cfg, tmp_path, monkeypatch):
    """The EMA moves (1 - decay) of the way to the parameters, its decay ramps up from 0.1, and
    the saved model holds the EMA's weights (with ema_decay 0, the raw parameters')."""
    import foresight.model.train as tm

    e, p = {"w": jax.numpy.zeros(2)}, {"w": jax.numpy.asarray([1.0, -2.0])}
    np.testing.assert_allclose(np.asarray(tm.ema_update(e, p, 0.9)["w"]), [0.1, -0.2], atol=1e-7)
    assert tm.ema_decay_at(0.99, 0) == pytest.approx(0.1) and tm.ema_decay_at(0.99, 10**6) == 0.99
    tr, va = sources(cfg.data.image_size, cfg.data.window)
    seen = {}
    real = tm.ema_update

    def spy(ema, params, decay):
        out = real(ema, params, decay)
        seen["ema"], seen["raw"] = jax.device_get(out), jax.device_get(params)
        return out

    monkeypatch.setattr(tm, "ema_update", spy)
    saved = {}
    for decay in (0.9, 0.0):
        tcfg = cfg.train.model_copy(
            update={"max_steps": 4, "val_every": 4, "patience": 9, "ema_decay": decay}
        )
        out = tmp_path / f"ema{decay}"
        train_model(cfg.model, tcfg, cfg.data.model_dump(mode="json"), tr, va, out, progress=False)
        saved[decay] = jax.tree.leaves(nnx.state(load_model(out).model, nnx.Param))
    ema, raw = jax.tree.leaves(seen["ema"]), jax.tree.leaves(seen["raw"])
    assert any(not np.allclose(a, b) for a, b in zip(ema, raw, strict=True))
    for a, b in zip(saved[0.9], ema, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(saved[0.0], saved[0.9], strict=True))


def test_learning_rate_halves_on_a_plateau_and_resumes(cfg):
    """Two validations without improvement halve the rate (down to lr_min_scale); the state
    survives a resume."""
    from foresight.model.train import Plateau

    tcfg = cfg.train.model_copy(update={"lr_patience": 2, "lr_factor": 0.5, "lr_min_scale": 0.2})
    p, scales = Plateau(tcfg), []
    for v in [1.0, 0.9, 0.95, 0.93, 0.8, 0.85, 0.86, 0.9, 0.9, 0.9, 0.9]:
        p.update(v)
        scales.append(p.scale)
    assert scales == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2])
    again = Plateau(tcfg, p.to_dict())
    assert again.to_dict() == p.to_dict()


def test_resume_after_interruption(cfg, tmp_path, monkeypatch):
    import foresight.model.train as tm

    tcfg = cfg.train.model_copy(update={"max_steps": 6, "checkpoint_every": 2, "val_every": 3})
    tr, va = sources(cfg.data.image_size, cfg.data.window)
    calls = {"n": 0}
    real = tm.validate

    def interrupt(*a, **k):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "validate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_model(
            cfg.model,
            tcfg,
            cfg.data.model_dump(mode="json"),
            tr,
            va,
            tmp_path / "r",
            progress=False,
        )
    state = json.loads((tmp_path / "r.train" / "loop.json").read_text())
    assert state["step"] == 3 and state["plateau"]["scale"] == 1.0
    monkeypatch.setattr(tm, "validate", real)
    res = train_model(
        cfg.model, tcfg, cfg.data.model_dump(mode="json"), tr, va, tmp_path / "r", progress=False
    )
    assert res.steps == 6 and not (tmp_path / "r.train").exists()


def test_data_parallel_matches_single_device(tmp_path):
    """Four simulated CPU devices give the same parameters as one (same global batch)."""
    script = HERE / "dp_worker.py"
    outs = []
    for n in (1, 4):
        env = dict(
            os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu"
        )
        out = tmp_path / f"p{n}.npz"
        subprocess.run([sys.executable, str(script), str(out)], env=env, check=True, timeout=600)
        outs.append(np.load(out))
    assert outs[1]["devices"] == 4 and outs[0]["devices"] == 1
    for k in (k for k in outs[0].files if k != "devices"):
        np.testing.assert_allclose(outs[0][k], outs[1][k], rtol=2e-3, atol=2e-5)


def test_params_swap_between_frames(cfg, trained):
    pred = Predictor.load(trained.path)
    frames, sens = belt_clip(4, cfg.data.image_size, 3)
    carry = pred.init_carry(1)
    carry, before = pred.step(carry, frames[None, 0], sens[None, 0])
    zeroed = load_model(trained.path)
    state = nnx.state(zeroed.model, nnx.Param)
    state = jax.tree.map(lambda x: x * 0.0, state)
    nnx.update(zeroed.model, state)
    pred.swap(zeroed)
    carry, after = pred.step(carry, frames[None, 1], sens[None, 1])
    assert not np.allclose(np.asarray(before.frame), np.asarray(after.frame))


def test_calibration_extras_ride_with_weights(trained, tmp_path):
    from foresight.model.checkpoint import save_model

    b = load_model(trained.path)
    b.extra = {"region_scale": np.arange(64, dtype=np.float32).reshape(8, 8)}
    save_model(b, tmp_path / "cal")
    back = load_model(tmp_path / "cal")
    np.testing.assert_array_equal(back.extra["region_scale"], b.extra["region_scale"])
    assert read_card(tmp_path / "cal")["extra_keys"] == ["region_scale"]
