"""PLC adapter: guard tables, then a real asyncua PLC simulator on a free loopback port."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr, ValidationError

from foresight.plc import Applied, DryRunActuator, Guard, PlcConfig, PlcError, heartbeat_loop
from foresight.plc.opcua import OpcUaActuator
from foresight.plc.sim_server import SIM_APP_URI, PlcSim, SimSecurity, free_port, make_certificate

NAN = math.nan


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """Run one test body in a fresh event loop, never longer than ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def fast(**update: Any) -> PlcConfig:
    """No-security config with short timings and no rate limit (unless updated)."""
    base = dict(
        security_policy="None",
        security_mode="None",
        allow_insecure=True,
        heartbeat_s=0.1,
        heartbeat_timeout_s=0.6,
        max_step_pct_per_s=1e6,
        max_drop_pct_per_s=1e6,
        reconnect_min_s=0.1,
        reconnect_max_s=0.4,
        timeout_s=2.0,
    )
    return PlcConfig(**{**base, **update})


async def until(check: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------- guard
@pytest.mark.parametrize(
    ("requested", "current", "elapsed", "enable", "limit", "reason"),
    [
        (40.0, 100.0, 2.0, True, 40.0, "ok"),  # a full second's budget and more: one step
        (40.0, 100.0, 0.5, True, 50.0, "rate_limited"),  # falls at 100 %/s for 0.5 s
        (70.0, 100.0, 0.5, True, 70.0, "ok"),  # the engine's slow-down: one write
        (60.0, 50.0, 0.1, True, 55.0, "rate_limited"),  # rises at 50 %/s
        (100.0, 70.0, 0.5, True, 95.0, "rate_limited"),  # restoring speed is the slow side
        (10.0, 100.0, 9.0, True, 30.0, "clamped"),  # never below min_limit_pct
        (150.0, 50.0, 9.0, True, 100.0, "clamped"),  # never above 100 % of the setpoint
        (40.0, 100.0, 0.5, False, None, "disabled"),  # Enable off: nothing to write
        (NAN, 100.0, 1.0, True, None, "invalid"),
        (math.inf, 100.0, 1.0, True, None, "invalid"),
        (40.0, 40.0, 0.5, True, 40.0, "hold"),  # already there
        (40.0, NAN, 2.0, True, 40.0, "ok"),  # unknown PLC value counts as 100
        (100.0, 0.0, 0.5, True, 55.0, "rate_limited"),  # out-of-range PLC value clamped first
        (40.0, 100.0, 0.0, True, 100.0, "hold"),  # no time, no step
    ],
)
def test_guard_table(requested, current, elapsed, enable, limit, reason):
    d = Guard(min_limit_pct=30.0, max_step_pct_per_s=50.0, max_drop_pct_per_s=100.0).decide(
        requested, current, elapsed, enable
    )
    assert (d.limit, d.reason) == (limit, reason)


def test_guard_never_leaves_range_or_rate_on_random_inputs():
    rng = np.random.default_rng(0)
    g = Guard(min_limit_pct=25.0, max_step_pct_per_s=40.0, max_drop_pct_per_s=90.0)
    cases = rng.uniform((-50, 25, 0), (200, 100, 2), size=(2000, 3))
    for req, cur, dt in cases:
        d = g.decide(req, cur, dt, True)
        assert d.limit is not None and 25.0 <= d.limit <= 100.0
        assert d.limit - cur <= 40.0 * dt + 1e-6
        assert cur - d.limit <= 90.0 * dt + 1e-6


def test_guard_and_config_refuse_nonsense():
    with pytest.raises(ValueError, match="min_limit_pct"):
        Guard(min_limit_pct=120.0)
    with pytest.raises(ValueError, match="max_step_pct_per_s"):
        Guard(max_step_pct_per_s=0.0)
    with pytest.raises(ValueError, match="max_drop_pct_per_s"):
        Guard(max_drop_pct_per_s=-1.0)
    with pytest.raises(ValidationError, match="disagree"):
        PlcConfig(security_policy="None")
    with pytest.raises(ValidationError, match="opc.tcp"):
        PlcConfig(endpoint="http://plc:4840")
    with pytest.raises(ValidationError, match="extra"):
        PlcConfig(speed=3)
    assert "certificate is not set" in PlcConfig().security_problem()


def test_dry_run_actuator_guards_records_and_ramps():
    async def body() -> None:
        ticks = iter(np.arange(0.0, 100.0, 0.5))  # a clock that moves one heartbeat per call
        cfg = PlcConfig(heartbeat_s=0.5, max_step_pct_per_s=50.0)
        act = DryRunActuator(cfg, clock=lambda: float(next(ticks)))
        await act.connect()
        first = await act.apply(20.0)  # clamped to 30, one heartbeat of fall: 100 -> 50
        assert (first.limit, first.written, first.reason) == (50.0, False, "dry_run")
        for _ in range(10):
            await act.heartbeat()
        assert act.limit_pct == 30.0
        assert await act.set_alarm_state(2) is False
        assert list(act.alarm_states) == [2] and not (await act.read_inputs()).ok

    run(body())


def test_rate_budget_counts_from_the_last_written_change():
    """A heartbeat that only held the limit must not shrink the next slow-down (it did: the
    engine's 30-point slow-down then took two heartbeats, half a second late)."""

    async def body() -> None:
        now = [0.0]
        act = DryRunActuator(PlcConfig(heartbeat_s=0.5), clock=lambda: now[0])
        assert (await act.apply(70.0)).limit == 70.0  # one write
        now[0] = 10.0
        assert (await act.apply(100.0)).limit == 95.0  # rising: 50 %/s for one heartbeat
        for k in range(3):
            now[0] = 10.5 + 0.5 * k
            await act.heartbeat()
        assert act.limit_pct == 100.0
        now[0] = 20.0
        await act.heartbeat()  # holds at 100, nothing written
        now[0] = 20.1  # a slow-down 0.1 s after that heartbeat still lands whole
        assert (await act.apply(70.0)).limit == 70.0
        now[0] = 20.2  # a further drop right after a write is rate-limited
        assert (await act.apply(30.0)).limit == 60.0

    run(body())


def test_doctests_and_protocol():
    import doctest

    import foresight.plc.actuator
    import foresight.plc.tags
    from foresight.plc import Actuator, make_actuator

    for module in (foresight.plc.tags, foresight.plc.actuator):
        assert doctest.testmod(module).failed == 0
    assert isinstance(make_actuator(PlcConfig()), DryRunActuator)  # no endpoint: shadow only
    plc = make_actuator(fast(endpoint="opc.tcp://127.0.0.1:4840/plc"))
    assert isinstance(plc, OpcUaActuator) and isinstance(plc, Actuator)


# ----------------------------------------------------------------------- asyncua simulator
def test_typed_write_read_back_heartbeat_alarm_and_inputs():
    async def body() -> None:
        async with PlcSim(fast()) as sim:
            await sim.set("line_state", 3)
            await sim.set("operator_setpoint", 90.0)
            async with OpcUaActuator(fast(endpoint=sim.endpoint)) as plc:
                out = await plc.apply(42.5)
                assert out == Applied(42.5, 42.5, True, 42.5, True, "ok")
                assert sim.value("speed_limit_pct") == 42.5
                assert await plc.heartbeat() and await plc.heartbeat()
                assert sim.value("heartbeat") == 2
                assert await plc.set_alarm_state(4)
                assert sim.value("alarm_state") == 4
                typed = {n: sim.variant_type(n) for n in ("heartbeat", "alarm_state")}
                assert typed == {"heartbeat": "UInt32", "alarm_state": "Int16"}
                inputs = await plc.read_inputs()
                assert (inputs.ok, inputs.enable, inputs.line_state) == (True, True, 3)
                assert inputs.operator_setpoint == 90.0 and not inputs.running
                with pytest.raises(ValueError, match="AlarmState"):
                    await plc.set_alarm_state(9)

    run(body())


def test_enable_off_writes_no_limit_until_the_plant_allows_it():
    async def body() -> None:
        async with PlcSim(fast()) as sim:
            await sim.set("enable", False)
            async with OpcUaActuator(fast(endpoint=sim.endpoint)) as plc:
                out = await plc.apply(40.0)
                assert (out.written, out.reason) == (False, "disabled")
                for _ in range(3):
                    await plc.heartbeat()
                assert sim.writes["speed_limit_pct"] == 0
                assert sim.value("speed_limit_pct") == 100.0
                await sim.set("enable", True)
                await plc.heartbeat()  # the pending target goes out once allowed
                assert sim.value("speed_limit_pct") == 40.0

    run(body())


def test_dry_run_connects_and_reads_but_writes_nothing():
    async def body() -> None:
        async with PlcSim(fast()) as sim:
            async with OpcUaActuator(fast(endpoint=sim.endpoint, dry_run=True)) as plc:
                out = await plc.apply(40.0)
                assert (out.limit, out.written, out.reason) == (40.0, False, "dry_run")
                assert not await plc.heartbeat()
                assert not await plc.set_alarm_state(2)
                assert (await plc.read_inputs()).ok
            assert sum(sim.writes.values()) == 0
            assert sim.value("speed_limit_pct") == 100.0 and sim.value("heartbeat") == 0

    run(body())


def test_heartbeat_keeps_the_limit_and_its_loss_reverts_to_100():
    async def body() -> None:
        cfg = fast(heartbeat_timeout_s=0.6)
        async with PlcSim(cfg) as sim:
            async with OpcUaActuator(cfg.model_copy(update={"endpoint": sim.endpoint})) as plc:
                beat = asyncio.create_task(heartbeat_loop(plc, cfg.heartbeat_s))
                await plc.apply(40.0)
                await asyncio.sleep(1.0)  # well past the timeout: the heartbeat holds it
                assert sim.value("speed_limit_pct") == 40.0 and sim.reverts == 0
                beat.cancel()
                took = await until(lambda: sim.value("speed_limit_pct") == 100.0, 2.0)
                assert took <= cfg.heartbeat_timeout_s + 0.4 and sim.reverts == 1
                await plc.heartbeat()  # Foresight back: its target is re-applied
                assert sim.value("speed_limit_pct") == 40.0

    run(body())


def test_plc_restart_reconnects_and_reasserts_the_limit():
    async def body() -> None:
        cfg = fast()
        sim = PlcSim(cfg)
        await sim.start()
        port = sim.port
        plc = OpcUaActuator(cfg.model_copy(update={"endpoint": sim.endpoint}))
        await plc.connect()
        beat = asyncio.create_task(heartbeat_loop(plc, cfg.heartbeat_s))
        try:
            await plc.apply(40.0)
            await plc.set_alarm_state(2)
            await sim.stop()
            await until(lambda: not plc.connected, 3.0)
            await asyncio.sleep(0.3)
            sim = PlcSim(cfg, port=port)
            await sim.start()
            took = await until(lambda: sim.value("speed_limit_pct") == 40.0, 5.0)
            assert took < 5.0
            # The counter is bumped once the whole re-assert (limit, alarm state) has finished.
            await until(lambda: plc.reconnects == 1, 2.0)
            assert plc.reconnects == 1
            assert sim.value("alarm_state") == 2
            await until(lambda: sim.value("heartbeat") > 0, 1.0)
        finally:
            beat.cancel()
            await plc.close()
            await sim.stop()

    run(body())


def test_the_simulated_feeder_really_slows_down():
    from foresight.config import load_config
    from foresight.sim.line import LineSim

    sim_cfg = load_config(preset="tiny", environ={}).sim.model_copy(
        update={"speed_changes_per_hour": 0.0, "faults_per_hour": 0.0}
    )
    line = LineSim(sim_cfg, seed=2)
    for _ in range(round(3 * sim_cfg.fps)):
        line.step()
    op = line.operator_setpoint

    async def body() -> None:
        async with PlcSim(fast(), line=line, tick_s=0.02) as sim:
            async with OpcUaActuator(fast(endpoint=sim.endpoint)) as plc:
                await plc.apply(50.0)
                await until(lambda: line.speed_limit == 50.0, 1.0)
                for _ in range(round(sim_cfg.fps)):
                    line.step()
                await asyncio.sleep(0.1)
                inputs = await plc.read_inputs()
                assert inputs.operator_setpoint == pytest.approx(op)
                assert inputs.actual_speed == pytest.approx(0.5 * op, rel=1e-3)
                assert inputs.running

    run(body())


# -------------------------------------------------------------------------------- errors
def test_clear_errors_for_insecure_unreachable_missing_node_and_namespace():
    async def body() -> None:
        ep = f"opc.tcp://127.0.0.1:{free_port()}/plc"
        with pytest.raises(PlcError, match="allow_insecure is false"):
            await OpcUaActuator(fast(endpoint=ep, allow_insecure=False)).connect()
        with pytest.raises(PlcError, match="endpoint is not set"):
            OpcUaActuator(fast())
        with pytest.raises(PlcError, match=f"{ep}: unreachable"):
            await OpcUaActuator(fast(endpoint=ep)).connect()
        async with PlcSim(fast()) as sim:
            tags = {"tags": {"enable": "s=Line1.Permit"}}
            with pytest.raises(PlcError, match=r"tag Enable at node ns=2;s=Line1.Permit is not"):
                await OpcUaActuator(fast(endpoint=sim.endpoint, **tags)).connect()
            with pytest.raises(PlcError, match="namespace 'urn:other' is not on the server"):
                await OpcUaActuator(
                    fast(endpoint=sim.endpoint, namespace_uri="urn:other")
                ).connect()

    run(body())


# ------------------------------------------------------------------------------ security
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """Server and client certificates, each side trusting the other; an untrusted client."""
    d = tmp_path_factory.mktemp("pki")
    out: dict[str, Path] = {}
    out["server_cert"], out["server_key"] = make_certificate(
        d / "server", "plc-sim", SIM_APP_URI, server=True
    )
    out["cert"], out["key"] = make_certificate(
        d / "client", "foresight", "urn:foresight:client", server=False
    )
    out["bad_cert"], out["bad_key"] = make_certificate(
        d / "intruder", "intruder", "urn:intruder", server=False
    )
    for side, cert in (("server_trust", "cert"), ("client_trust", "server_cert")):
        (d / side).mkdir()
        shutil.copy(out[cert], d / side)
        out[side] = d / side
    return out


def secure_cfg(pki: dict[str, Path], endpoint: str, **update: Any) -> PlcConfig:
    """Basic256Sha256 SignAndEncrypt with the client certificate, trust store and password."""
    cfg = PlcConfig(
        endpoint=endpoint,
        certificate=pki["cert"],
        private_key=pki["key"],
        trust_store=pki["client_trust"],
        username="line",
        password=SecretStr("s3cret"),
        max_step_pct_per_s=1e6,
        max_drop_pct_per_s=1e6,
    )
    return cfg.model_copy(update=update)


def secure_sim(pki: dict[str, Path]) -> PlcSim:
    """Simulator offering only Basic256Sha256, trusting the client certificate, one user."""
    security = SimSecurity(
        pki["server_cert"], pki["server_key"], pki["server_trust"], {"line": "s3cret"}
    )
    return PlcSim(fast(), security=security)


def test_basic256sha256_with_trusted_certificates_and_password_works(pki):
    async def body() -> None:
        async with secure_sim(pki) as sim:
            for mode, pct in (("SignAndEncrypt", 55.0), ("Sign", 65.0)):
                cfg = secure_cfg(pki, sim.endpoint, security_mode=mode)
                assert cfg.secure and not cfg.allow_insecure
                async with OpcUaActuator(cfg) as plc:
                    out = await plc.apply(pct)
                    assert out.confirmed and sim.value("speed_limit_pct") == pct

    run(body())


def test_untrusted_certificates_and_wrong_password_get_clear_errors(pki):
    cases = {
        "credentials rejected for user 'line'": {"password": SecretStr("guess")},
        "the PLC rejected this client's certificate .*intruder": {
            "certificate": pki["bad_cert"],
            "private_key": pki["bad_key"],
        },
        "the PLC's certificate is not trusted": {"trust_store": pki["server_trust"]},
    }

    async def body() -> None:
        async with secure_sim(pki) as sim:
            for error, update in cases.items():
                with pytest.raises(PlcError, match=f"^{sim.endpoint}: {error}"):
                    await OpcUaActuator(secure_cfg(pki, sim.endpoint, **update)).connect()
            assert sim.writes.total() == 0

    run(body())
