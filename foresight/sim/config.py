"""Configuration of the simulated cartoning line (the ``[sim]`` table)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultType = Literal["flap_rise", "skew", "double_feed", "glue_miss", "belt_slip"]
FAULT_TYPES: tuple[str, ...] = ("flap_rise", "skew", "double_feed", "glue_miss", "belt_slip")


class SimConfig(BaseModel):
    """Simulated line: geometry, rates of normal variation, faults and drifts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(128, ge=32, le=1024, description="rendered frame width, pixels")
    height: int = Field(128, ge=32, le=1024, description="rendered frame height, pixels")
    fps: float = Field(25.0, gt=0, le=120, description="camera frame rate")
    seed: int = Field(0, ge=0, description="seed; the same seed gives the same footage")
    clip_seconds: float = Field(60.0, gt=0, le=3600, description="length of each video file")
    setpoint_cpm: float = Field(120.0, ge=10, le=600, description="nominal feeder cartons/min")
    speed_range: tuple[float, float] = Field(
        (0.8, 1.1), description="planned speed changes, as fractions of the nominal setpoint"
    )
    speed_changes_per_hour: float = Field(2.0, ge=0, le=120)
    rampup_seconds: float = Field(20.0, ge=0, le=600, description="ramp-up at shift start")
    faults_per_hour: float = Field(6.0, ge=0, le=600)
    fault_types: tuple[FaultType, ...] = Field(FAULT_TYPES, min_length=1)
    precursor_seconds: tuple[float, float] = Field(
        (1.0, 4.0), description="range of precursor durations before a jam"
    )
    jam_stop_seconds: float = Field(60.0, ge=1, le=7200, description="line stop after a jam")
    mitigation_fraction: float = Field(
        0.3, gt=0, lt=1, description="feeder slow-down (fraction) that resolves a precursor"
    )
    mitigation_lead_seconds: float = Field(
        0.5, ge=0, le=10, description="slow-down must act this long before the jam onset"
    )
    nuisance_per_hour: float = Field(8.0, ge=0, le=600, description="hands/shadows passing")
    changeovers_per_hour: float = Field(0.0, ge=0, le=60)
    flicker_amplitude: float = Field(0.03, ge=0, le=0.5, description="mains-light flicker")
    noise_sigma: float = Field(2.0, ge=0, le=50, description="camera noise, grey levels")
    bearing_wear_per_hour: float = Field(0.0, ge=0, le=10, description="vibration drift mm/s/h")
    lighting_change_at: float | None = Field(
        None, ge=0, description="seconds from start when the lighting changes (a slow drift)"
    )
    supplier_change_at: float | None = Field(
        None,
        ge=0,
        description="seconds from start when carton blanks from a new supplier feed in (the next "
        "of the line's products, without a stop): a lasting change that calls for a retrain",
    )
    appearance_seed: int = Field(
        0,
        ge=0,
        description="line variant: palette, camera offset/zoom, belt colour and product set; "
        "evaluate on a value never used in training to test an unseen line",
    )
    products: int = Field(3, ge=1, le=8, description="product variants run on this line")
    changeover_seconds: float = Field(
        90.0, ge=5, le=3600, description="line stopped for a product changeover"
    )

    @model_validator(mode="after")
    def _ranges(self) -> SimConfig:
        lo, hi = self.speed_range
        if not 0 < lo <= hi <= 2:
            raise ValueError(
                f"speed_range must satisfy 0 < low <= high <= 2, got {self.speed_range}"
            )
        lo, hi = self.precursor_seconds
        if not 0.2 <= lo <= hi <= 30:
            raise ValueError(
                "precursor_seconds must satisfy 0.2 <= low <= high <= 30, "
                f"got {self.precursor_seconds}"
            )
        return self
