"""Configuration of the residual tracker (the ``[residuals]`` table)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ResidualConfig(BaseModel):
    """How prediction errors become one calibrated, causally smoothed anomaly score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: int = Field(
        2, ge=1, le=128, description="region size in model pixels (heatmap and calibration cells)"
    )
    pixel_metric: Literal["hp", "nll", "mse"] = Field(
        "hp",
        description="hp: high-passed log-brightness error, blind to shadows and dimming; "
        "nll: squared error over the model's own predicted variance; mse: plain",
    )
    border_fraction: float = Field(
        1 / 16,
        ge=0,
        lt=0.5,
        description="regions within this share of the frame's side from an edge are left out of "
        "the pixel score (they stay on the heatmap): what enters the picture comes from outside "
        "the model's view, so the frame's rim is where a forecast cannot be right",
    )
    components: tuple[Literal["pixel", "latent", "sensor"], ...] = Field(
        ("pixel", "latent", "sensor"), min_length=1, description="residuals that form the score"
    )
    tail_quantile: float | None = Field(
        0.999,
        gt=0.5,
        lt=1,
        description="stage-1 cells are scaled so that this quantile of their normal values sits "
        "at the same z in every cell (equal exceedance per region and sensor), where the "
        "calibration footage has at least 10/(1 - q) samples of the cell; below that, and with "
        "none, the MAD alone scales them",
    )
    smooth_seconds: float = Field(
        0.3, ge=0, le=60, description="time constant of the causal EWMA on the score (0 = none)"
    )
    shewhart_margin: float | None = Field(
        None,
        ge=0,
        le=20,
        description="combined Shewhart-EWMA chart: the score is also raised to the unsmoothed "
        "score less this margin (calibrated units), so a large sudden change alarms at once while "
        "a small sustained one waits for the EWMA; none: EWMA only",
    )
    warmup_seconds: float = Field(
        2.0, ge=0, le=600, description="no score until the model has watched this long"
    )
    trend_hours: float = Field(
        1.0, gt=0, le=24 * 30, description="time constant of the long residual trend (drift)"
    )
    occlusion_fraction: float = Field(
        0.01,
        gt=0,
        le=1,
        description="share of regions diverging at once beyond which something passes between "
        "camera and line (a hand, a shadow): no alarm until it has gone",
    )
    command_channels: tuple[str, ...] = Field(
        ("feeder_setpoint",),
        description="sensor channels that carry a commanded speed (setpoints, not measurements): "
        "when one changes (a planned speed change, a restart ramp, a slow-down) the forecasts "
        "made before it assumed the old speed, so the score is withheld until the longest "
        "horizon after the change; channels the model does not have are ignored",
    )
    global_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of regions diverging at once that marks a global change "
        "(lighting, camera moved): a health matter, not a carton fault",
    )
