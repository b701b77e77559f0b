"""Configuration of the always-on monitor (the ``[monitor]`` table)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MonitorConfig(BaseModel):
    """What the monitor watches, how fast, and where it reports its own health."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        None, description="calibrated model directory; none = the sample model in data_samples/"
    )
    source: str = Field(
        "sim",
        description="'sim' (the simulated line, live), a video file, an rtsp:// or http:// "
        "stream, or a USB camera number",
    )
    sensors: str | None = Field(
        None, description="sensor CSV to replay beside a video file; none = PLC tags or the sim's"
    )
    speed: float = Field(
        1.0, ge=0, le=1000, description="real-time factor for sim and file sources (0 = flat out)"
    )
    frame_queue: int = Field(
        2, ge=1, le=64, description="frames waiting for the model (drop oldest)"
    )
    telemetry_queue: int = Field(
        100_000, ge=100, description="points waiting for the store (drop newest, counted)"
    )
    health_file: str = Field(
        "runs/monitor/health.json", description="JSON a supervisor watches (rewritten every second)"
    )
    plc_sim: bool = Field(
        True,
        description="with no plc.endpoint, run the PLC simulator in-process (embedded default)",
    )
    duration_s: float | None = Field(None, gt=0, description="stop after this many seconds")
