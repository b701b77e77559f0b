"""The PLC side of Foresight: guarded speed-limit commands over OPC UA, and a PLC simulator.

``make_actuator(cfg.plc)`` gives an ``OpcUaActuator`` when an endpoint is configured (shadow mode
when ``plc.dry_run``) and a ``DryRunActuator`` otherwise. The tag contract is documented in
``foresight.plc.tags``. The OPC UA modules (``opcua``, ``sim_server``) are imported on use.
"""

from __future__ import annotations

from foresight.plc.actuator import (
    Actuator,
    Applied,
    Decision,
    DryRunActuator,
    Guard,
    PlcError,
    PlcInputs,
    heartbeat_loop,
    make_actuator,
)
from foresight.plc.config import PlcConfig, PlcTags
from foresight.plc.tags import ALARM_CODES, LINE_STATES, alarm_code

__all__ = [
    "ALARM_CODES",
    "LINE_STATES",
    "Actuator",
    "Applied",
    "Decision",
    "DryRunActuator",
    "Guard",
    "PlcConfig",
    "PlcError",
    "PlcInputs",
    "PlcTags",
    "alarm_code",
    "heartbeat_loop",
    "make_actuator",
]
