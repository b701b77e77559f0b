"""Configuration of the telemetry store: the local SQLite spool (``[store]``) and the
InfluxDB v2 write target it forwards to (``[influx]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class InfluxConfig(BaseModel):
    """InfluxDB v2 write API target (token only from the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="http://host:8086; none = local store only")
    org: str = "foresight"
    bucket: str = "foresight"
    token: SecretStr | None = None
    batch_size: int = Field(500, ge=1, le=100_000, description="points per write request")
    flush_interval_s: float = Field(
        1.0, gt=0, le=600, description="how often the forwarder looks for new points when idle"
    )
    timeout_s: float = Field(5.0, gt=0, le=300, description="HTTP timeout of one write request")
    retry_min_s: float = Field(0.5, gt=0, le=600, description="first back-off after a failure")
    retry_max_s: float = Field(
        15.0, gt=0, le=3600, description="longest back-off (doubling from retry_min_s)"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> InfluxConfig:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError(
                f"influx.retry_max_s ({self.retry_max_s}) is below retry_min_s ({self.retry_min_s})"
            )
        return self


class StoreConfig(BaseModel):
    """Local durable spool: every telemetry point lands here first, then goes to InfluxDB."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field("runs/store/foresight.sqlite", min_length=1, description="SQLite file")
    retention_days: float = Field(
        7.0,
        gt=0,
        le=3650,
        description="forwarded points older than this are pruned; unforwarded points are kept "
        "(at least this long) until max_points forces the oldest out",
    )
    max_points: int = Field(
        50_000_000,
        ge=1,
        description="bound on rows in the spool (about 7 days at 80 points/s, ~250 B each); "
        "past it the oldest forwarded, then the oldest unforwarded points are dropped "
        "(counted and logged)",
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal",
        description="SQLite synchronous mode under WAL: normal survives a process crash, full "
        "also the last commits across a power cut (one fsync per append)",
    )
