"""Sensors by OPC UA subscription to PLC tags, against the asyncua PLC simulator on loopback."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from pydantic import ValidationError

from foresight.bench.faults import stop_plc
from foresight.errors import InputError
from foresight.monitor.config import MonitorConfig
from foresight.monitor.plc_sensors import PlcSensors, with_plc_sensors
from foresight.monitor.sources import Observation
from foresight.plc import PlcConfig, PlcError
from foresight.plc.sim_server import PlcSim

CHANNELS = ("belt_speed", "motor_current", "feeder_setpoint")
#: ActualSpeed follows the simulator's feeder (setpoint while running, 0 otherwise)
TAGS = {"feeder_setpoint": "s=Line1.ActualSpeed", "belt_speed": "s=Line1.LineState"}


def _cfg(**update) -> PlcConfig:
    base = dict(
        security_policy="None",
        security_mode="None",
        allow_insecure=True,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        timeout_s=2.0,
    )
    return PlcConfig(**{**base, **update})


async def _until(check, timeout: float) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        await asyncio.sleep(0.02)


def test_subscription_follows_tags_goes_unknown_when_lost_and_recovers():
    async def body() -> None:
        sim = PlcSim(_cfg())
        await sim.start()
        port = sim.port
        sensors = PlcSensors(_cfg(endpoint=sim.endpoint), CHANNELS, TAGS, publish_ms=50)
        await sensors.start()
        try:
            await _until(lambda: sensors.values[2] == 120.0, 3)
            await sim.set("operator_setpoint", 90.0)
            await _until(lambda: tuple(sensors.snapshot()[[0, 2]]) == (0.0, 90.0), 3)
            await sim.set("line_state", 3)  # changeover: the feeder stops
            await _until(lambda: tuple(sensors.snapshot()[[0, 2]]) == (3.0, 0.0), 3)
            assert math.isnan(sensors.values[1])  # not mapped: unknown

            async def frames():
                for i in range(3):
                    yield Observation(i / 10, np.zeros((4, 4, 3), np.uint8), np.full(3, 7.0), None)

            rows = [o.sensors async for o in with_plc_sensors(frames(), sensors)]
            assert all(list(r) == [3.0, 7.0, 0.0] for r in rows)
            await stop_plc(sim)  # the PLC goes away: values become unknown, not stale
            await _until(lambda: np.isnan(sensors.values).all(), 10)
            assert sensors.losses >= 1
            sim = PlcSim(_cfg(), port=port)
            await sim.start()
            await _until(lambda: sensors.values[2] == 120.0, 20)  # resubscribed, fresh PLC
        finally:
            await sensors.close()
            await stop_plc(sim)

    asyncio.run(asyncio.wait_for(body(), 60))


def test_bad_sensor_mappings_are_refused_in_one_line():
    with pytest.raises(InputError, match="vibration not among the model's sensor channels"):
        PlcSensors(_cfg(endpoint="opc.tcp://127.0.0.1:1/x"), CHANNELS, {"vibration": "s=X"})
    with pytest.raises(InputError, match="needs plc.endpoint"):
        PlcSensors(_cfg(), CHANNELS, TAGS)
    with pytest.raises(ValidationError, match="not an OPC UA node id"):
        MonitorConfig(sensor_tags={"belt_speed": "Line1.Belt"})

    async def body() -> None:
        async with PlcSim(_cfg()) as sim:
            bad = PlcSensors(_cfg(endpoint=sim.endpoint), CHANNELS, {"belt_speed": "s=Line1.Nope"})
            with pytest.raises(PlcError, match="sensor belt_speed at node s=Line1.Nope"):
                await bad.start()

    asyncio.run(asyncio.wait_for(body(), 30))
