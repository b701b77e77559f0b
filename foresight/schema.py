"""Shared names of the sensor channels and line states that cross module boundaries."""

from __future__ import annotations

#: Sensor channels of the cartoning line, in CSV column order after ``t``.
SENSOR_CHANNELS: tuple[str, ...] = (
    "belt_speed",  # m/s at the conveyor
    "motor_current",  # A, main drive
    "vibration_rms",  # mm/s, main drive bearing
    "glue_pressure",  # bar, hot-melt manifold
    "photo_eye_count",  # cumulative cartons counted at the transfer
    "feeder_setpoint",  # cartons/min the feeder is asked to run at (the PLC's action)
)

#: Channel that carries the action (the feeder-speed setpoint the PLC controls).
ACTION_CHANNEL = "feeder_setpoint"

#: Line states reported in labels and by PLC tags.
LINE_STATES: tuple[str, ...] = ("running", "stopped", "changeover")
