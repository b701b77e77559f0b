"""``foresight train`` and ``foresight pretrain`` as library calls: data in, ready model out."""

from __future__ import annotations

from pathlib import Path

from foresight.config import Config, resolved_dict
from foresight.model.data import open_training_data
from foresight.model.train import TrainResult, maybe_init_distributed, train_model


def fit(
    cfg: Config,
    data: Path | None,
    out: Path,
    *,
    init: Path | None = None,
    sim: bool = False,
    lines: int = 1,
    progress: bool = True,
) -> TrainResult:
    """Train or fine-tune a world model from footage, shards or the simulator."""
    maybe_init_distributed()
    out = Path(out).resolve()  # orbax needs absolute paths
    train_src, val_src, data_card = open_training_data(
        cfg, data, out, sim=sim, lines=lines, progress=progress
    )
    if data_card.get("manifest"):  # the crop the footage was cut with, for replay and monitor
        from foresight.ingest.roi import manifest_roi

        roi = manifest_roi(Path(data_card["manifest"]))
        roi = None if roi == "unknown" else roi
        cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"roi": roi})})
    card = {"config": resolved_dict(cfg), "data_source": data_card, "line": cfg.line.name}
    res = train_model(
        cfg.model,
        cfg.train,
        cfg.data.model_dump(mode="json"),
        train_src,
        val_src,
        out,
        init=init,
        card=card,
        progress=progress,
    )
    calibrate_saved(cfg, res.path, lambda _: val_src.streams(), progress=progress)
    return res


def calibrate_saved(cfg: Config, path: Path, streams, *, progress: bool = True) -> dict:
    """Calibrate the model at ``path`` on the normal footage ``streams(bundle)`` gives; save it.

    ``streams`` is called with the loaded model, so footage can be read at its resolution, rate
    and crop."""
    from foresight.calibration import calibrate_model
    from foresight.model.checkpoint import load_model, save_model

    bundle = load_model(path)
    summary = calibrate_model(bundle, streams(bundle), cfg.residuals, cfg.alarms, progress=progress)
    save_model(bundle, path)
    return summary


def recalibrate(cfg: Config, model: Path, data: Path, *, progress: bool = True) -> dict:
    """Recalibrate a trained model on the held-out split of its footage (same split as train).

    The data and training settings (resolution, channels, validation split) are the model's own,
    from its card; the residual and alarm settings are the current configuration's.
    """
    from foresight.ingest.config import DataConfig
    from foresight.model.checkpoint import read_card
    from foresight.model.config import TrainConfig

    model = Path(model).resolve()
    trained = read_card(model).get("config", {})
    if "data" in trained and "train" in trained:
        cfg = cfg.model_copy(
            update={
                "data": DataConfig(**trained["data"]),
                "train": TrainConfig(**trained["train"]),
            }
        )
    _, val_src, _ = open_training_data(cfg, Path(data), model, progress=progress)
    return calibrate_saved(cfg, model, lambda _: val_src.streams(), progress=progress)


def calibrate_on_footage(cfg: Config, model: Path, footage: list[Path], *, progress=True) -> dict:
    """Recalibrate on normal footage the model never trained on, all of it held out.

    A plant keeps recording: days of normal running after training give a far longer calibration
    than the training footage's held-out split, and a rare false-alarm target needs it (the
    thresholds extrapolate less). Videos (and same-stem CSVs) are read at the model's resolution,
    rate and crop, exactly as replay reads them.
    """
    from foresight.evaluate.run import load_recordings

    def streams(bundle) -> list:
        size, fps = int(bundle.data["image_size"]), float(bundle.data["fps"])
        channels = tuple(bundle.data.get("channels", ()))
        recs = load_recordings([Path(f) for f in footage], size, fps, channels, bundle.roi)
        return [({"name": r.name}, r.frames, r.sensors) for r in recs]

    return calibrate_saved(cfg, Path(model).resolve(), streams, progress=progress)
