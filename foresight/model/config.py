"""Configuration of the world model (``[model]``) and of its training (``[train]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Architecture of the world model: sizes, horizons and loss weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizons: tuple[float, ...] = Field(
        (0.1, 1.0, 2.0, 3.0), min_length=1, description="prediction horizons, seconds"
    )
    context: int = Field(10, ge=1, le=1024, description="frames observed before rolling out")
    conv: tuple[int, ...] = Field((16, 32, 64, 128), min_length=1, description="conv widths")
    embed: int = Field(256, ge=4, le=4096)
    deter: int = Field(256, ge=4, le=4096, description="deterministic (GRU) state size")
    stoch: int = Field(32, ge=0, le=1024, description="stochastic latent size; 0 = deterministic")
    hidden: int = Field(256, ge=4, le=4096)
    background_alpha: float = Field(
        0.2, gt=0, le=1, description="EWMA rate of the background copy source (per frame)"
    )
    free_nats: float = Field(1.0, ge=0, le=100)
    kl_dyn: float = Field(0.5, ge=0, le=100)
    kl_rep: float = Field(0.1, ge=0, le=100)
    open_loop: float = Field(1.0, ge=0, le=100, description="weight of open-loop predictions")
    latent_overshoot: float = Field(0.1, ge=0, le=100)
    sensor_weight: float = Field(1.0, ge=0, le=100)
    beta_nll: float = Field(0.5, ge=0, le=1, description="beta of the beta-NLL loss")
    diff_channels: tuple[str, ...] = Field(
        ("photo_eye_count",), description="cumulative counters the model sees as differences"
    )


class TrainConfig(BaseModel):
    """Optimisation, validation, early stopping and checkpointing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(8, ge=1, le=65536)
    lr: float = Field(2e-3, gt=0, le=1)
    finetune_lr_scale: float = Field(
        0.15,
        gt=0,
        le=1,
        description="fine-tuning from a model (train --init, retrain) runs at lr times this: "
        "the full rate knocked a trained model off its minimum (held-out objective 1.08 -> "
        "1.5-1.7 within 50 steps, never recovered in 400)",
    )
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float = Field(100.0, gt=0)
    lr_patience: int = Field(
        2,
        ge=1,
        description="validations without improvement before the learning rate is cut by "
        "lr_factor (reduce on plateau)",
    )
    lr_factor: float = Field(0.5, gt=0, le=1, description="cut of the rate on a plateau")
    lr_min_scale: float = Field(0.05, gt=0, le=1, description="the rate is never cut below this")
    ema_decay: float = Field(
        0.99,
        ge=0,
        lt=1,
        description="validation, early stopping and the saved model use an exponential moving "
        "average of the parameters (Polyak) with this decay per step; 0 = the raw parameters",
    )
    max_steps: int = Field(20000, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="wall-clock budget")
    val_every: int = Field(50, ge=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    val_batches: int = Field(8, ge=1, description="validation batches per evaluation")
    patience: int = Field(8, ge=1, description="validations without improvement before stopping")
    checkpoint_every: int = Field(500, ge=1)
    seed: int = Field(0, ge=0)
