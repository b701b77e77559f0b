"""Configuration of the always-on monitor (the ``[monitor]`` table)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from foresight.plc.config import _NODE_ID as NODE_ID


class FootageConfig(BaseModel):
    """What the monitor keeps of its footage (``[monitor.footage]``); all of it stays here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: bool = Field(True, description="keep a rolling archive of normal footage")
    archive_dir: str | None = Field(
        None, description="archive folder; none = archive/ beside monitor.health_file"
    )
    archive_hours: float = Field(
        168.0, gt=0, le=24 * 365, description="archive retention (hours of wall clock)"
    )
    archive_gb: float = Field(20.0, gt=0, description="archive size bound, GB (oldest go first)")
    segment_s: float = Field(60.0, ge=5, le=3600, description="archive segment length, seconds")
    guard_s: float = Field(
        30.0, ge=0, le=3600, description="normal seconds that must follow a segment to keep it"
    )
    clips: bool = Field(True, description="write an evidence clip around every alarm")
    clip_before_s: float = Field(10.0, ge=0, le=120)
    clip_after_s: float = Field(10.0, ge=0, le=120)
    clip_side: int = Field(480, ge=64, le=4096, description="evidence clip long side, pixels")
    clip_days: float = Field(90.0, gt=0, le=3650, description="evidence clip retention, days")
    publish_s: float = Field(
        0.5, ge=0.05, le=60, description="live frame for the dashboard, every this many seconds"
    )
    queue: int = Field(64, ge=4, le=10_000, description="steps queued for the keeper (drop newest)")


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
    footage: FootageConfig = Field(
        default_factory=FootageConfig,
        description="rolling archive of normal footage, evidence clips, live frame",
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


def archive_folder(cfg: MonitorConfig) -> Path:
    """The monitor's rolling archive of normal footage (``foresight retrain`` reads it)."""
    f = cfg.footage.archive_dir
    return Path(f) if f else Path(cfg.health_file).parent / "archive"
