"""The line's drive and its state machine: setpoint ramps, the PLC limit, jams and changeovers."""

from __future__ import annotations

from foresight.sim import scene as sc
from foresight.sim.config import SimConfig

LIMIT_TAU = 0.12  #: s, first-order lag of the feeder behind the PLC's speed limit (~0.4 s)
OP_RATE = 0.05  #: planned speed changes ramp at this fraction of the nominal setpoint per second
TRIP_DELAY = 0.3  #: s of pile-up before the overload trips the drive
DECEL = 0.25  #: s from trip to standstill
RUNOUT_MAX = 10.0  #: s a changeover lets the belt run empty before stopping it
_STATE = {
    "run": "running",
    "jam": "running",
    "trip": "running",
    "stop": "stopped",
    "co_run": "changeover",
    "co_trip": "changeover",
    "co_stop": "changeover",
}


class Drive:
    """Feeder setpoint and belt drive, stepped once per frame by :class:`LineSim`."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.nominal = cfg.setpoint_cpm
        self.operator = cfg.setpoint_cpm
        self.operator_target = cfg.setpoint_cpm
        self.limit = 1.0
        self.limit_target = 1.0
        self.ramp = 0.0 if cfg.rampup_seconds > 0 else 1.0
        self.gate = 1.0
        self.phase = "run"
        self.applied = 0.0
        self.jam_load = 0.0
        self.stop_until = 0.0
        self._t0 = 0.0
        self._co_start = 0.0
        self._product_changed = False
        self._recompute()

    # ------------------------------------------------------------------ read-outs
    @property
    def state(self) -> str:
        """Reported line state: running, stopped or changeover."""
        return _STATE[self.phase]

    @property
    def feeding(self) -> bool:
        """True while the feeder places cartons."""
        return self.phase in ("run", "jam")

    @property
    def drive_on(self) -> bool:
        """True while the main drive is enabled."""
        return self.phase not in ("stop", "co_stop")

    @property
    def speed_su(self) -> float:
        """Drive speed in scene units per second (one flight pitch per carton)."""
        return sc.PITCH * self.applied / 60.0

    @property
    def speed_ratio(self) -> float:
        """Applied setpoint relative to the nominal one."""
        return self.applied / self.nominal

    def steady(self) -> bool:
        """Running with the start-up ramp finished."""
        return self.phase == "run" and self.ramp >= 1.0

    def limit_settled(self) -> bool:
        """The feeder has caught up with the PLC's limit."""
        return abs(self.limit - self.limit_target) < 1e-3

    def quiet(self) -> bool:
        """Steady, no ramp under way and a real speed: a fault may start now."""
        return (
            self.steady()
            and self.limit_settled()
            and self.operator == self.operator_target
            and self.applied > 0.2 * self.nominal
        )

    # ------------------------------------------------------------------ commands
    def start_jam(self, t: float) -> None:
        """A carton caught: the drive keeps pushing until the overload trips."""
        self.phase = "jam"
        self._t0 = t

    def start_changeover(self, t: float) -> None:
        """Stop feeding, let the belt run empty, then stop for the changeover."""
        self.phase = "co_run"
        self._t0 = t
        self._product_changed = False

    # ------------------------------------------------------------------ stepping
    def _recompute(self) -> None:
        r = self.ramp
        ramp = r * r * (3.0 - 2.0 * r) if r < 1.0 else 1.0
        self.applied = self.operator * self.limit * ramp * self.gate

    def _ramps(self, dt: float) -> None:
        step = OP_RATE * self.nominal * dt
        diff = self.operator_target - self.operator
        self.operator = (
            self.operator_target
            if abs(diff) <= step
            else self.operator + step * (1 if diff > 0 else -1)
        )
        self.limit += (self.limit_target - self.limit) * min(1.0, dt / LIMIT_TAU)
        if abs(self.limit - self.limit_target) < 2e-3:
            self.limit = self.limit_target
        if self.phase == "run" and self.ramp < 1.0:
            rs = self.cfg.rampup_seconds
            self.ramp = 1.0 if rs <= 0 else min(1.0, self.ramp + dt / rs)

    def update(self, dt: float, t: float, cartons_on_belt: int) -> str | None:
        """Advance ramps and the state machine to time ``t``; returns what happened, if anything."""
        self._ramps(dt)
        happened = None
        ph = self.phase
        if ph == "jam":
            self.jam_load = min(1.0, (t - self._t0) / TRIP_DELAY)
            if t - self._t0 >= TRIP_DELAY - 1e-9:
                self.phase, self._t0, happened = "trip", t, "tripped"
        elif ph in ("trip", "co_trip"):
            self.jam_load *= 0.5
            self.gate = max(0.0, 1.0 - (t - self._t0) / DECEL)
            if self.gate <= 0.0:
                happened = self._halt(t)
        elif ph == "stop" and t >= self.stop_until - 1e-9:
            happened = self._restart()
        elif ph == "co_run" and (cartons_on_belt == 0 or t - self._t0 >= RUNOUT_MAX):
            self.phase, self._co_start, self._t0 = "co_trip", self._t0, t
        elif ph == "co_stop":
            if not self._product_changed and t >= (self._t0 + self.stop_until) / 2:
                self._product_changed, happened = True, "product_change"
            elif t >= self.stop_until - 1e-9:
                happened = self._restart()
        self._recompute()
        return happened

    def _halt(self, t: float) -> str:
        self.jam_load = 0.0
        if self.phase == "trip":
            self.phase = "stop"
            self.stop_until = t + self.cfg.jam_stop_seconds
            return "stopped"
        self.phase = "co_stop"
        self.stop_until = max(self._co_start + self.cfg.changeover_seconds, t + 2.0)
        self._t0 = t
        return "changeover_stopped"

    def _restart(self) -> str:
        self.phase = "run"
        self.gate = 1.0
        self.ramp = 0.0 if self.cfg.rampup_seconds > 0 else 1.0
        return "restarted"
