"""Configuration of the alarm engine and its calibration (the ``[alarms]`` table)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AlarmConfig(BaseModel):
    """Alarm calibration target, OPC UA Part 9 style delays and the feeder slow-down policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    false_alarms_per_shift: float = Field(
        0.5,
        gt=0,
        le=1000,
        description="calibration target on normal footage; the product promises at most 1 "
        "per shift, so the default leaves margin",
    )
    shift_hours: float = Field(8.0, gt=0, le=24, description="length of one shift, hours")
    on_delay_s: float = Field(
        0.3, ge=0, le=60, description="score must stay at/above alarm this long to slow down"
    )
    off_delay_s: float = Field(
        2.0, ge=0, le=600, description="score must stay below clear this long to end a slow-down"
    )
    deadband: float = Field(
        0.3,
        ge=0,
        le=1,
        description="clear = alarm - deadband * (alarm - baseline), baseline = median score",
    )
    watch_factor: float = Field(
        20.0,
        ge=1,
        le=1e4,
        description="watch level: normal data crosses it this many times as often as alarm",
    )
    realarm_s: float = Field(
        10.0, ge=0, le=3600, description="no new slow-down this long after one ended"
    )
    min_slowdown_s: float = Field(5.0, ge=0, le=600, description="minimum dwell in slow-down")
    max_slowdowns_per_hour: int = Field(
        6,
        ge=1,
        le=3600,
        description="cap per rolling hour; further alarms are reported (watch, suppressed), "
        "not commanded",
    )
    max_slowdown_s: float | None = Field(
        30.0,
        gt=0,
        le=3600,
        description="a slow-down still held this long ends (the limit ramps back to 100 %) "
        "whatever the score, and the ramp cannot re-enter it: a world model trained on "
        "footage at full speed has not seen the line at the reduced speed, so its score cannot "
        "clear there and the slow-down would hold for ever; back at full speed, a score still "
        "above alarm starts a new one after realarm_s (counted in the hourly cap); None: no "
        "limit",
    )
    slowdown_pct: float = Field(
        70.0, ge=10, le=100, description="speed limit during a slow-down, % of setpoint"
    )
    recover_ramp_s: float = Field(
        5.0, ge=0, le=600, description="limit ramps linearly back to 100 % over this time"
    )
    settle_s: float = Field(
        3.0,
        ge=0,
        le=600,
        description="after the line resumes, scores are ignored until they have stayed in the "
        "calibrated settle band (Thresholds.settled, else watch) this long (the restart "
        "has settled); after model health returns, scores are ignored this long",
    )
    settle_max_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="after the line resumes, scores count again at the latest this long after "
        "the last stopped step, settled or not (at most settle_s: a fixed settling time)",
    )
    margin: float = Field(
        1.0,
        ge=1,
        le=10,
        description="multiplies the calibrated alarm level's distance above baseline",
    )

    @model_validator(mode="after")
    def _timeout_after_dwell(self) -> AlarmConfig:
        if self.max_slowdown_s is not None and self.max_slowdown_s < self.min_slowdown_s:
            raise ValueError(
                f"max_slowdown_s ({self.max_slowdown_s:g}) must be at least min_slowdown_s "
                f"({self.min_slowdown_s:g})"
            )
        return self
