"""Configuration of the always-on monitor (the ``[monitor]`` table)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from foresight.plc.config import _NODE_ID as NODE_ID


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
    stall_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="no camera frame this long = camera stalled: health fault, slow-down released",
    )
    swap_request: str | None = Field(
        None,
        description="file whose appearance hot-swaps the model (its text: a model directory; "
        "empty: reload monitor.model); none = swap.request beside health_file; SIGHUP reloads too",
    )
    sensor_tags: dict[str, str] = Field(
        default_factory=dict,
        description="model sensor channel -> PLC node id subscribed over OPC UA (bare ids are in "
        "plc.namespace_uri), for camera sources without a sensor CSV",
    )

    @field_validator("sensor_tags")
    @classmethod
    def _node_ids(cls, v: dict[str, str]) -> dict[str, str]:
        for channel, node in v.items():
            if not re.match(NODE_ID, node):
                raise ValueError(f"{channel}: {node!r} is not an OPC UA node id (e.g. s=Line1.X)")
        return v
