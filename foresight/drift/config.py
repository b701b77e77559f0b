"""Configuration of the drift detector (the ``[drift]`` table)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DriftConfig(BaseModel):
    """How the long residual trend is watched for a sustained rise, and how a rise is explained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: Literal["page_hinkley", "adwin"] = Field(
        "page_hinkley", description="river detector fed one value per sample (rises only count)"
    )
    sample_seconds: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="line time per detector sample: the median instant score of the normal, "
        "running steps in it (short alarms never reach the detector)",
    )
    min_fill: float = Field(
        0.5, gt=0, le=1, description="share of a sample's steps that must be normal and running"
    )
    min_samples: int = Field(
        30, ge=5, le=100_000, description="samples before a drift can be raised (the reference)"
    )
    delta: float = Field(
        0.3, ge=0, le=100, description="Page-Hinkley: rise (score units) tolerated as noise"
    )
    threshold: float = Field(
        15.0, gt=0, le=1e6, description="Page-Hinkley: cumulative rise that raises a drift"
    )
    adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence")
    region_z: float = Field(
        1.0,
        gt=0,
        le=100,
        description="a region counts as changed when its trend "
        "rose this many robust sigmas above the reference",
    )
    sensor_z: float = Field(
        2.0,
        gt=0,
        le=100,
        description="a sensor counts as changed when its trend rose this many robust sigmas "
        "above the reference: stricter than region_z, since the sensor head reads the picture "
        "too and a broad picture change moves its residuals by about one sigma (measured on a "
        "supplier change: 1.04, with the picture's 8.75)",
    )
    broad_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="share of regions changed that makes a change 'broad' "
        "(lighting, camera, supplier: the plant changed)",
    )
