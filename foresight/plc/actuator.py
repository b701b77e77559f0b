"""The PLC side of Foresight: the ``Actuator`` protocol, the pure ``Guard``, ``PlcError``, dry run.

Every speed limit goes through ``Guard.decide`` before it reaches a PLC: it is clamped to
``[min_limit_pct, 100]`` (100 = the operator's own setpoint, never more), it rises at most
``max_step_pct_per_s`` and falls at most ``max_drop_pct_per_s``, and nothing is written while the
plant's ``Enable`` is off. Actuators keep the last requested limit as a target and move towards it
on every ``heartbeat()``, so a rate-limited or refused limit is reached once the guard allows it.

The rates are asymmetric on purpose (fast attack, slow release). Slowing down is the protective
direction and is worth nothing if it lands late: with the defaults (100 %/s down, one heartbeat of
0.5 s) the alarm engine's 30-point slow-down is one write, where a symmetric 50 %/s split it over
two heartbeats and the feeder reached its slower speed half a second later. Raising speed again
is where a line gets hurt, so it stays slow. The budget counts from the last *written* change
(capped at one heartbeat), not from the last look: a heartbeat that only held the value does not
shrink the next step.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from foresight.errors import ForesightError
from foresight.plc.tags import ALARM_CODES

if TYPE_CHECKING:
    from foresight.plc.config import PlcConfig

log = logging.getLogger(__name__)

FULL_PCT = 100.0
#: two limits closer than this (percentage points) are the same (Float tags round a little)
TOLERANCE_PCT = 1e-4


class PlcError(ForesightError):
    """The PLC cannot be used: names the endpoint or node and what is wrong."""


_CREDENTIALS = frozenset(
    "BadUserAccessDenied BadIdentityTokenInvalid BadIdentityTokenRejected "
    "BadUserSignatureInvalid".split()
)


def describe_failure(cfg: PlcConfig, exc: BaseException, rejected: list[str]) -> str:
    """One line for a failed connect: endpoint, what went wrong, what to check.

    ``rejected`` holds the status names our own check of the PLC's certificate raised.
    """
    ep, name, text = cfg.endpoint, type(exc).__name__, str(exc)
    if rejected:
        return (
            f"{ep}: the PLC's certificate is not trusted ({rejected[0]}); add it to "
            f"plc.trust_store {cfg.trust_store} or pin it with plc.server_certificate"
        )
    if name in _CREDENTIALS:
        return (
            f"{ep}: credentials rejected for user {cfg.username!r} ({name}); "
            "check plc.username and FORESIGHT_PLC__PASSWORD"
        )
    if name.startswith(("BadCertificate", "BadSecurity")):
        return (
            f"{ep}: the PLC rejected this client's certificate {cfg.certificate} "
            f"({name}); add it to the PLC's trusted certificates"
        )
    if name.startswith("Bad"):
        return f"{ep}: connection refused by the server ({name})"
    if "mismatch" in text:
        return f"{ep}: the PLC's certificate differs from plc.server_certificate"
    if "No matching endpoints" in text:
        return f"{ep}: the server offers no {cfg.security_policy}/{cfg.security_mode} endpoint"
    if isinstance(exc, TimeoutError):
        return f"{ep}: unreachable: no answer within {cfg.timeout_s:g} s"
    if isinstance(exc, OSError):
        return f"{ep}: unreachable: {exc.strerror or exc}"
    return f"{ep}: cannot connect: {name}: {text}"


@dataclass(frozen=True)
class Decision:
    """What the guard allows: the limit to write (None = write nothing) and why."""

    limit: float | None
    reason: str  # ok, hold, clamped, rate_limited, disabled, invalid


@dataclass(frozen=True)
class Applied:
    """Outcome of one ``apply``: the limit decided, whether it was written and read back."""

    requested: float
    limit: float | None  # what the guard allowed (None: nothing to write)
    written: bool
    read_back: float | None  # the PLC's value after the write (or as found)
    confirmed: bool  # read_back equals the intended limit
    reason: str  # the guard's reason, or hold, dry_run, disconnected, write failed: ...


@dataclass(frozen=True)
class PlcInputs:
    """The plant's tags as last read; ``ok`` is False when they could not be read."""

    enable: bool
    line_state: int | None
    operator_setpoint: float
    actual_speed: float
    ok: bool

    @property
    def running(self) -> bool:
        """True when the line reports state 0 (running)."""
        return self.line_state == 0

    @classmethod
    def unknown(cls) -> PlcInputs:
        """Nothing known: not enabled, no state, NaN speeds, ``ok`` False."""
        return cls(False, None, math.nan, math.nan, False)


@runtime_checkable
class Actuator(Protocol):
    """Where speed-limit commands go: an OPC UA PLC, or nowhere (dry run)."""

    async def connect(self) -> None:
        """Open the connection; raises ``PlcError`` with one clear line."""
        ...

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        ...

    async def apply(self, limit_pct: float) -> Applied:
        """Make ``limit_pct`` the target and take one guarded step towards it."""
        ...

    async def heartbeat(self) -> bool:
        """Bump the heartbeat counter and keep moving towards the target; False if not written."""
        ...

    async def read_inputs(self) -> PlcInputs:
        """Read Enable, LineState, OperatorSetpoint and ActualSpeed."""
        ...

    async def set_alarm_state(self, code: int) -> bool:
        """Write the ``AlarmState`` code (``foresight.plc.tags.ALARM_CODES``)."""
        ...


@dataclass(frozen=True)
class Guard:
    """Pure limits on what may be written: range, rate and the plant's Enable."""

    min_limit_pct: float = 30.0
    max_step_pct_per_s: float = 50.0  # raising the limit (restoring speed)
    max_drop_pct_per_s: float = 100.0  # lowering it (slowing down)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_limit_pct <= FULL_PCT:
            raise ValueError(f"min_limit_pct must be in [0, 100], got {self.min_limit_pct}")
        if not self.max_step_pct_per_s > 0:
            raise ValueError(f"max_step_pct_per_s must be > 0, got {self.max_step_pct_per_s}")
        if not self.max_drop_pct_per_s > 0:
            raise ValueError(f"max_drop_pct_per_s must be > 0, got {self.max_drop_pct_per_s}")

    @classmethod
    def from_config(cls, cfg: PlcConfig) -> Guard:
        """The guard a ``PlcConfig`` asks for."""
        return cls(cfg.min_limit_pct, cfg.max_step_pct_per_s, cfg.max_drop_pct_per_s)

    def clamp(self, pct: float) -> float:
        """``pct`` limited to [min_limit_pct, 100].

        >>> Guard(30.0).clamp(10.0), Guard(30.0).clamp(120.0)
        (30.0, 100.0)
        """
        return min(FULL_PCT, max(self.min_limit_pct, float(pct)))

    def decide(self, requested: float, current: float, elapsed_s: float, enable: bool) -> Decision:
        """The next limit on the way from ``current`` to ``requested`` after ``elapsed_s``.

        ``current`` is the PLC's present value (NaN when unknown: taken as 100). A rise is at
        most ``max_step_pct_per_s * elapsed_s``, a fall at most ``max_drop_pct_per_s *
        elapsed_s``; callers pass the time since their last written change, capped at one
        heartbeat, so a long pause does not allow a jump.
        """
        if not enable:
            return Decision(None, "disabled")
        if not math.isfinite(requested):
            return Decision(None, "invalid")
        want = self.clamp(requested)
        start = self.clamp(current) if math.isfinite(current) else FULL_PCT
        dt = max(0.0, float(elapsed_s))
        up, down = self.max_step_pct_per_s * dt, self.max_drop_pct_per_s * dt
        limit = round(start + min(up, max(-down, want - start)), 6)
        if math.isfinite(current) and abs(limit - current) <= TOLERANCE_PCT:
            return Decision(limit, "hold")
        if abs(limit - want) > TOLERANCE_PCT:
            return Decision(limit, "rate_limited")
        return Decision(limit, "clamped" if abs(want - requested) > TOLERANCE_PCT else "ok")


class DryRunActuator:
    """Shadow mode without a PLC: guards, logs and records every command, writes nothing."""

    def __init__(
        self,
        cfg: PlcConfig | None = None,
        *,
        inputs: PlcInputs | None = None,
        keep: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = Guard.from_config(cfg) if cfg is not None else Guard()
        self._tick_s = cfg.heartbeat_s if cfg is not None else 0.5
        self._inputs = inputs if inputs is not None else PlcInputs.unknown()
        self._clock = clock
        self._shadow = FULL_PCT
        self._last_t: float | None = None
        self.target: float | None = None
        #: the most recent outcomes and alarm codes (bounded: oldest dropped)
        self.applied: deque[Applied] = deque(maxlen=keep)
        self.alarm_states: deque[int] = deque(maxlen=keep)
        self.heartbeats = 0

    @property
    def limit_pct(self) -> float:
        """The limit a PLC would hold now."""
        return self._shadow

    async def connect(self) -> None:
        """Nothing to connect to."""
        log.info("PLC dry run: commands are logged, nothing is written")

    async def close(self) -> None:
        """Nothing to close."""

    async def apply(self, limit_pct: float) -> Applied:
        """Guard ``limit_pct`` and record what would be written."""
        self.target = float(limit_pct)
        return self._step()

    async def heartbeat(self) -> bool:
        """Count the beat and keep ramping towards the target; nothing is written."""
        self.heartbeats += 1
        if self.target is not None and abs(self._shadow - self.target) > TOLERANCE_PCT:
            self._step()
        return False

    async def read_inputs(self) -> PlcInputs:
        """The inputs given at construction (unknown by default)."""
        return self._inputs

    async def set_alarm_state(self, code: int) -> bool:
        """Record the alarm code."""
        self.alarm_states.append(int(code))
        return False

    def _step(self) -> Applied:
        assert self.target is not None
        now = self._clock()
        elapsed = self._tick_s if self._last_t is None else min(now - self._last_t, self._tick_s)
        d = self._guard.decide(self.target, self._shadow, elapsed, True)
        if d.limit is None or d.reason == "hold":
            out = Applied(self.target, d.limit, False, None, False, d.reason)
        else:
            log.info("PLC dry run: would write SpeedLimitPct=%.1f (%s)", d.limit, d.reason)
            self._shadow, self._last_t = d.limit, now
            out = Applied(self.target, d.limit, False, None, False, "dry_run")
        self.applied.append(out)
        return out


async def heartbeat_loop(act: Actuator, period_s: float) -> None:
    """Call ``act.heartbeat()`` every ``period_s`` on a fixed schedule until cancelled."""
    loop = asyncio.get_running_loop()
    next_t = loop.time()
    while True:
        await act.heartbeat()
        next_t += period_s
        delay = next_t - loop.time()
        if delay < 0:  # fell behind (slow PLC): skip the missed beats rather than burst
            next_t = loop.time()
            delay = 0.0
        await asyncio.sleep(delay)


def make_actuator(cfg: PlcConfig) -> Actuator:
    """OPC UA actuator when an endpoint is configured (shadow mode if ``dry_run``), else dry run."""
    if cfg.endpoint is None:
        return DryRunActuator(cfg)
    from foresight.plc.opcua import OpcUaActuator

    return OpcUaActuator(cfg)


def check_alarm_code(code: int) -> int:
    """``code`` if it is a known ``AlarmState`` code, else ``ValueError``."""
    if int(code) not in ALARM_CODES.values():
        known = sorted(ALARM_CODES.values())
        raise ValueError(f"unknown AlarmState code {code!r} (known: {known})")
    return int(code)
