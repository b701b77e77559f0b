"""Interop: ``OpcUaActuator`` against a node-opcua server (a second OPC UA stack, other types).

The server script lives in ``tests/nodeopcua``; node-opcua is installed there with npm on first
use. The test is skipped only when node or npm is not installed at all.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import Client, ua

from foresight.plc import PlcConfig, heartbeat_loop
from foresight.plc.opcua import OpcUaActuator
from foresight.plc.sim_server import free_port

HERE = Path(__file__).parent / "nodeopcua"
TIMEOUT_MS = 800


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with node-opcua installed next to the server script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: the node-opcua interop test needs Node.js and npm")
    if not (HERE / "node_modules" / "node-opcua-server").is_dir():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm install in {HERE} failed:\n{done.stderr[-2000:]}"
    return node


@pytest.fixture
def server(node: str, tmp_path: Path) -> Iterator[str]:
    """A node-opcua server on a free port; yields its endpoint once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [node, "server.js", str(port), str(tmp_path / "pki")],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HEARTBEAT_TIMEOUT_MS": str(TIMEOUT_MS)},
    )
    try:
        yield _ready(proc, 30.0)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the script stops when stdin closes
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _ready(proc: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the script's ``READY <endpoint>`` line."""
    assert proc.stdout is not None
    seen: list[str] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        readable, _, _ = select.select([proc.stdout], [], [], 0.5)
        if readable:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            if line.startswith("READY "):
                return line.split()[1]
            seen.append(line)
    raise AssertionError(f"node-opcua server did not start:\n{''.join(seen)[-2000:]}")


def test_actuator_against_node_opcua(server: str):
    cfg = PlcConfig(
        endpoint=server,
        security_policy="None",
        security_mode="None",
        allow_insecure=True,
        heartbeat_s=0.1,
        heartbeat_timeout_s=0.5,
        max_step_pct_per_s=1e6,
        max_drop_pct_per_s=1e6,
    )

    async def body() -> None:
        async with OpcUaActuator(cfg) as plc, Client(server) as probe:
            ns = (await probe.get_namespace_array()).index(cfg.namespace_uri)

            def node(tag: str):
                return probe.get_node(f"ns={ns};s=Line1.{tag}")

            vtype = await node("SpeedLimitPct").read_data_type_as_variant_type()
            assert vtype == ua.VariantType.Float
            out = await plc.apply(42.7)  # a Float tag: the write must be typed Float
            assert out.written and out.confirmed
            assert math.isclose(out.read_back, 42.7, rel_tol=1e-6)
            assert math.isclose(await node("SpeedLimitPct").read_value(), 42.7, rel_tol=1e-6)

            assert await plc.heartbeat() and await plc.heartbeat()
            assert await node("Heartbeat").read_value() == 2
            assert await plc.set_alarm_state(3)  # an Int32 tag here, Int16 on the simulator
            assert await node("AlarmState").read_value() == 3

            inputs = await plc.read_inputs()
            assert (inputs.ok, inputs.enable, inputs.line_state) == (True, True, 0)
            assert (inputs.operator_setpoint, inputs.actual_speed) == (120.0, 118.5)

            beat = asyncio.create_task(heartbeat_loop(plc, cfg.heartbeat_s))
            await asyncio.sleep(2 * TIMEOUT_MS / 1000)  # the heartbeat keeps node's watchdog calm
            assert math.isclose(await node("SpeedLimitPct").read_value(), 42.7, rel_tol=1e-6)
            beat.cancel()
            t0 = time.monotonic()
            while await node("SpeedLimitPct").read_value() != 100.0:
                assert time.monotonic() - t0 < TIMEOUT_MS / 1000 + 1.0, "no revert to 100"
                await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(body(), 30.0))
