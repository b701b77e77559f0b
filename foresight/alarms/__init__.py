"""Alarm engine: calibrated thresholds and a pure state machine from score to speed limit."""

from __future__ import annotations

from foresight.alarms.calibrate import calibrate_thresholds, false_alarm_rate
from foresight.alarms.config import AlarmConfig
from foresight.alarms.engine import (
    AlarmState,
    Command,
    Thresholds,
    Tick,
    count_alarms,
    initial_state,
    run_engine,
    step,
)

__all__ = [
    "AlarmConfig",
    "AlarmState",
    "Command",
    "Thresholds",
    "Tick",
    "calibrate_thresholds",
    "count_alarms",
    "false_alarm_rate",
    "initial_state",
    "run_engine",
    "step",
]
