"""Configuration of footage ingestion (the ``[ingest]`` table) and the shared ``[data]`` table."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foresight.schema import SENSOR_CHANNELS


class DataConfig(BaseModel):
    """What the model sees: resolution, rate, sensor channels and training-window shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(64, ge=16, le=512, description="model frames are square, this many px")
    fps: float = Field(10.0, gt=0, le=120, description="model frame rate")
    channels: tuple[str, ...] = Field(SENSOR_CHANNELS, description="sensor columns, CSV order")
    window: int = Field(40, ge=2, le=4096, description="frames per training window")
    stride: int = Field(20, ge=1, le=4096, description="frames between window starts")

    @model_validator(mode="after")
    def _stride(self) -> DataConfig:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class IngestConfig(BaseModel):
    """How raw recordings become training shards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roi: tuple[int, int, int, int] | Literal["auto"] | None = Field(
        "auto",
        description="region of interest x, y, width, height in source pixels; auto: the band "
        "where the line moves, found from the footage (foresight.ingest.roi); none: whole frame",
    )

    @field_validator("roi", mode="before")
    @classmethod
    def _none(cls, v: object) -> object:
        return None if isinstance(v, str) and v.lower() == "none" else v

    workers: int = Field(1, ge=1, le=64)
    max_length_mismatch_seconds: float = Field(
        1.0, ge=0, description="allowed difference between video and CSV durations"
    )
    require_sensors: bool = Field(False, description="reject videos without a same-stem CSV")
    chunk_frames: int = Field(
        64, ge=1, le=4096, description="output frames buffered per write (bounds worker memory)"
    )
