"""The PLC tag contract shared by Foresight, the PLC simulator, the node-opcua test server and
real PLC programs.

All tags live in one namespace (``plc.namespace_uri``, default ``urn:foresight:line``); their node
ids come from ``plc.tags`` (default ``s=Line1.<Tag>``).

Written by Foresight:

==================  ==================  ===================================================
Tag                 Type                Meaning
==================  ==================  ===================================================
``SpeedLimitPct``   Double (or Float)   the feeder may run at most this % of the operator's
                                        setpoint; the PLC applies min(setpoint, limit %).
                                        Foresight keeps it in [min_limit_pct, 100].
``Heartbeat``       UInt32              counter, +1 every ``heartbeat_s`` (wraps at 2**32)
``AlarmState``      Int16 (or Int32)    0 normal, 1 watch, 2 slowdown, 3 recovering,
                                        4 health_fault (informational)
==================  ==================  ===================================================

Read by Foresight:

=====================  =========  ==============================================================
Tag                    Type       Meaning
=====================  =========  ==============================================================
``Enable``             Boolean    the plant's permission for Foresight to act; while false
                                  Foresight writes no limit and the PLC ignores SpeedLimitPct
``LineState``          Int16/32   0 running, 1 stopped, 2 jam, 3 changeover
``OperatorSetpoint``   Double     the operator's feeder setpoint, cartons/min
``ActualSpeed``        Double     measured feeder speed, cartons/min
=====================  =========  ==============================================================

PLC side: when ``Heartbeat`` has not changed for ``heartbeat_timeout_s`` (2 s default) the PLC
puts ``SpeedLimitPct`` back to 100 on its own. Foresight is not a safety function: the PLC's own
interlocks stay in charge, and a limit only ever lowers the operator's setpoint.
"""

from __future__ import annotations

import math
from typing import Any

#: tag names as they appear on the PLC, keyed by the ``plc.tags`` field that holds their node id
TAGS: dict[str, str] = {
    "speed_limit_pct": "SpeedLimitPct",
    "heartbeat": "Heartbeat",
    "alarm_state": "AlarmState",
    "enable": "Enable",
    "line_state": "LineState",
    "operator_setpoint": "OperatorSetpoint",
    "actual_speed": "ActualSpeed",
}
#: tags Foresight writes
WRITTEN: tuple[str, ...] = ("speed_limit_pct", "heartbeat", "alarm_state")
#: tags Foresight reads
READ: tuple[str, ...] = ("enable", "line_state", "operator_setpoint", "actual_speed")

#: ``AlarmState`` codes, keyed by the alarm engine's modes
ALARM_CODES: dict[str, int] = {
    "normal": 0,
    "watch": 1,
    "slowdown": 2,
    "recovering": 3,
    "health_fault": 4,
}
#: ``LineState`` codes
LINE_STATES: dict[str, int] = {"running": 0, "stopped": 1, "jam": 2, "changeover": 3}
#: value range of each OPC UA integer type a tag may have
INT_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}
FLOAT_TYPES: tuple[str, ...] = ("Float", "Double")
#: OPC UA types a written tag may have
NUMERIC_TYPES: tuple[str, ...] = (*FLOAT_TYPES, *INT_RANGES)


def alarm_code(mode: str) -> int:
    """``AlarmState`` code of an alarm-engine mode.

    >>> alarm_code("slowdown")
    2
    """
    try:
        return ALARM_CODES[mode]
    except KeyError:
        raise ValueError(f"unknown alarm mode {mode!r} (known: {', '.join(ALARM_CODES)})") from None


def line_state_code(state: str | int) -> int:
    """``LineState`` code of a line state name (an int passes through).

    >>> line_state_code("changeover"), line_state_code(2)
    (3, 2)
    """
    if isinstance(state, int):
        return state
    try:
        return LINE_STATES[state]
    except KeyError:
        known = ", ".join(LINE_STATES)
        raise ValueError(f"unknown line state {state!r} (known: {known})") from None


def resolve_node_id(spec: str, ns_index: int | None, namespaces: list[str] | None = None) -> str:
    """Full node id string of a configured tag: bare ids go into namespace ``ns_index``.

    >>> resolve_node_id("s=Line1.Enable", 2)
    'ns=2;s=Line1.Enable'
    >>> resolve_node_id("ns=4;i=7", 2)
    'ns=4;i=7'
    >>> resolve_node_id("nsu=urn:x;s=A", None, ["http://opcfoundation.org/UA/", "urn:x"])
    'ns=1;s=A'
    """
    if spec.startswith("ns="):
        return spec
    if spec.startswith("nsu="):
        uri, _, rest = spec[4:].partition(";")
        if namespaces is None or uri not in namespaces:
            raise LookupError(f"namespace {uri!r} is not on the server")
        return f"ns={namespaces.index(uri)};{rest}"
    if ns_index is None:
        raise LookupError("the configured namespace is not on the server")
    return f"ns={ns_index};{spec}"


def convert(value: float | int | bool, type_name: str) -> float | int | bool:
    """``value`` as OPC UA type ``type_name`` (ints rounded and range-checked).

    >>> convert(42.6, "Int16"), convert(3, "Float"), convert(1, "Boolean")
    (43, 3.0, True)
    """
    if type_name in FLOAT_TYPES:
        return float(value)
    if type_name == "Boolean":
        return bool(value)
    if type_name in INT_RANGES:
        lo, hi = INT_RANGES[type_name]
        v = int(round(value))
        if not lo <= v <= hi:
            raise ValueError(f"{value!r} does not fit in {type_name}")
        return v
    raise ValueError(f"cannot write a number to a {type_name} tag")


def next_count(value: int, type_name: str) -> int:
    """The heartbeat after ``value``: +1, wrapping to 0 past the type's maximum.

    >>> next_count(7, "UInt32"), next_count(2**16 - 1, "UInt16")
    (8, 0)
    """
    hi = INT_RANGES.get(type_name, (0, 2**24))[1]
    return int(value) + 1 if 0 <= value < hi else 0


def as_float(value: Any) -> float:
    """A tag value as float, NaN when null or not a number.

    >>> as_float(3), as_float(None)
    (3.0, nan)
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
