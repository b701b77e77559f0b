"""The live simulated cartoning line, stepped one camera frame at a time.

``LineSim.step()`` returns a :class:`SimFrame` (picture, sensors, line state). The PLC's
``set_speed_limit`` acts on the next frame with a short ramp, so a closed loop can be run in
process. Ground truth (fault events, line-state segments, disturbances, carton poses) is exposed
for labels and tests only; it never appears in the picture or the sensors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from foresight.sim import faults as fl
from foresight.sim import scene as sc
from foresight.sim.ambient import (
    Disturbance,
    Lighting,
    PoissonTimer,
    changeover_hands,
    clearing_hand,
    random_disturbance,
)
from foresight.sim.config import FAULT_TYPES, SimConfig
from foresight.sim.control import Drive
from foresight.sim.conveyor import STATUS_NAMES, Conveyor, Moved
from foresight.sim.incidents import advance_fault, start_fault
from foresight.sim.labels import build_labels, file_table
from foresight.sim.pose import carton_poses, make_view
from foresight.sim.render import CartonPose, Renderer, View
from foresight.sim.scene import Appearance
from foresight.sim.sensors import DriveState, NormalStream, SensorModel


class SimFrame(NamedTuple):
    """One camera frame of the line with its sensor row."""

    t: float  #: seconds since the start
    frame: np.ndarray  #: (H, W, 3) uint8 RGB
    sensors: np.ndarray  #: (6,) float32 in ``SENSOR_CHANNELS`` order
    state: str  #: running, stopped or changeover


class CartonTruth(NamedTuple):
    """Ground-truth pose of one carton (for tests and evaluation, never rendered as such)."""

    id: int
    product: int
    x: float  #: centre x, scene units
    front: float
    status: str  #: belt, outfeed, stuck or piled
    angle: float  #: degrees
    flap: float  #: degrees


class LineSim:
    """The simulated line: ``step()`` renders the next frame; ``set_speed_limit`` is the PLC."""

    def __init__(self, cfg: SimConfig, seed: int | None = None, *, horizon_s: float | None = None):
        self.cfg = cfg
        base = cfg.seed if seed is None else seed
        streams = np.random.SeedSequence([base, 0xF0E5]).spawn(5)
        r_sched, r_cart, r_noise, r_light, r_pix = (np.random.default_rng(s) for s in streams)
        self._rng = r_sched
        self.dt = 1.0 / cfg.fps
        self.look = Appearance.from_seed(cfg.appearance_seed, cfg.products)
        self.renderer = Renderer(cfg.width, cfg.height, self.look, cfg.noise_sigma)
        self.drive = Drive(cfg)
        self.conveyor = Conveyor(self.look.products, r_cart)
        self.conveyor.product = int(r_sched.integers(len(self.look.products)))
        self._setup_product = self.conveyor.product
        self._supplier_at = cfg.supplier_change_at
        v_nom = sc.PITCH * cfg.setpoint_cpm / 60.0 * sc.M_PER_SU
        self.sensors = SensorModel(r_noise, self.dt, cfg.bearing_wear_per_hour, v_nom)
        self.lighting = Lighting(cfg.flicker_amplitude, cfg.lighting_change_at, r_light)
        self._jit = NormalStream(r_pix)
        self._lcg = int(r_pix.integers(1, 2**62))
        types = [t for t in cfg.fault_types if t in FAULT_TYPES]
        self._fault_types = types
        self._t_fault = PoissonTimer(cfg.faults_per_hour, r_sched)
        self._t_speed = PoissonTimer(cfg.speed_changes_per_hour, r_sched)
        self._t_nuis = PoissonTimer(cfg.nuisance_per_hour, r_sched)
        self._t_change = PoissonTimer(cfg.changeovers_per_hour, r_sched)
        self._want_d = self._draw_precursor()
        self._want_kind = self._draw_kind()
        self._forced: tuple[str, float | None] | None = None
        self._clip_frames = max(1, round(cfg.clip_seconds * cfg.fps))
        self._horizon = horizon_s
        self._k = -1
        self._events: list[fl.FaultEvent] = []
        self._active: fl.FaultEvent | None = None
        self._disturbances: list[Disturbance] = []  # all of them (ground truth)
        self._live: list[Disturbance] = []  # those not over yet (what the camera may see)
        self._states: list[list] = []
        self._gain = (1.0, 1.0, 1.0)
        self._last_view: View | None = None
        self._pose_map: dict[int, CartonPose] = {}
        self._moved: Moved | None = None
        self._slip = 0.0
        self._frame_jit = 0.0
        self._clear_at: float | None = None

    # ----------------------------------------------------------------- public API
    @property
    def t(self) -> float:
        """Time of the latest frame, seconds since the start (0 before the first step)."""
        return max(self._k, 0) * self.dt

    @property
    def operator_setpoint(self) -> float:
        """The operator's feeder setpoint, cartons/min (planned speed changes included)."""
        return self.drive.operator

    @property
    def applied_setpoint(self) -> float:
        """The feeder setpoint actually applied after the PLC limit and ramps, cartons/min."""
        return self.drive.applied

    @property
    def speed_limit(self) -> float:
        """The PLC's current SpeedLimitPct target (0-100)."""
        return self.drive.limit_target * 100.0

    @property
    def state(self) -> str:
        """Line state: running, stopped or changeover."""
        return self.drive.state

    @property
    def good_cartons(self) -> int:
        """Cartons transferred onto the outfeed."""
        return self.conveyor.good

    @property
    def jams(self) -> int:
        """Jams that have formed so far."""
        return sum(1 for e in self._events if e.jam_onset is not None)

    def set_speed_limit(self, pct: float) -> None:
        """The PLC's SpeedLimitPct: the feeder runs at min(setpoint, pct% of setpoint)."""
        if not math.isfinite(pct):
            raise ValueError(f"speed limit must be a finite percentage, got {pct!r}")
        self.drive.limit_target = min(100.0, max(0.0, float(pct))) / 100.0

    def inject_fault(self, kind: str, precursor_seconds: float | None = None) -> None:
        """Start a ``kind`` fault at the next frame where one can start (tests, demos)."""
        if kind not in FAULT_TYPES:
            raise ValueError(f"unknown fault type {kind!r} (known: {', '.join(FAULT_TYPES)})")
        self._forced = (kind, precursor_seconds)

    # ----------------------------------------------------------------- ground truth
    @property
    def events(self) -> list[fl.FaultEvent]:
        """Copies of all fault events so far (ground truth for labels)."""
        return [dataclasses.replace(e) for e in self._events]

    @property
    def active_fault(self) -> fl.FaultEvent | None:
        """A copy of the fault whose precursor (or jam) is under way, if any."""
        return None if self._active is None else dataclasses.replace(self._active)

    @property
    def state_segments(self) -> list[tuple[str, float, float]]:
        """(state, start, end) segments so far; the last one ends at the latest frame."""
        out = []
        for i, (st, start) in enumerate(self._states):
            end = self._states[i + 1][1] if i + 1 < len(self._states) else self.t + self.dt
            out.append((st, start, end))
        return out

    @property
    def disturbances(self) -> list[Disturbance]:
        """Hands and shadows so far (reason "nuisance" or "operator"); never faults."""
        return list(self._disturbances)

    @property
    def light_gain(self) -> tuple[float, float, float]:
        """Per-channel light gain of the latest frame (flicker and lighting drift)."""
        return self._gain

    def labels(self) -> dict[str, list[dict]]:
        """Label records (labels.json schema) for the frames so far, cut into clips as written."""
        frames = self._k + 1
        files = file_table(frames, self._clip_frames, self.cfg.fps) if frames > 0 else []
        if not files:
            return {"faults": [], "line_states": [], "files": []}
        return build_labels(
            self._events,
            self.state_segments,
            files,
            self.cfg.fps,
            self._clip_frames,
            self.cfg.jam_stop_seconds,
        )

    def cartons(self) -> list[CartonTruth]:
        """Ground-truth poses of the cartons in the latest frame."""
        poses = {} if self._last_view is None else self._pose_map
        out = []
        for c in self.conveyor.cartons:
            p = poses.get(c.id)
            ang, flap = (p.angle, p.flap) if p else (c.angle, 0.0)
            out.append(
                CartonTruth(c.id, c.product, c.x, c.front, STATUS_NAMES[c.status], ang, flap)
            )
        return out

    def render_counterfactual(self, *, noise: bool = True, nuisances: bool = True) -> np.ndarray:
        """The latest frame as it would look without the active fault (same light and noise)."""
        view = self._view(counterfactual=True, with_nuisances=nuisances)
        return self.renderer.render(view, noise=noise)

    def render_latest(self, *, noise: bool = True, nuisances: bool = True) -> np.ndarray:
        """Re-render the latest frame (optionally without noise or disturbances)."""
        view = self._view(counterfactual=False, with_nuisances=nuisances)
        return self.renderer.render(view, noise=noise)

    # ----------------------------------------------------------------- stepping
    def step(self) -> SimFrame:
        """Advance one frame and return its picture, sensors and state."""
        self._k += 1
        t = self._k * self.dt
        if self._k > 0:
            self._advance(t)
        else:
            self._log_state(t)
        self._gain = self.lighting.gain(t)
        self._lcg = (self._lcg * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        self._frame_jit = self._jit() * 0.05 * min(1.5, self.drive.speed_ratio)
        view = self._view(counterfactual=False, with_nuisances=True)
        self._last_view = view
        frame = self.renderer.render(view)
        return SimFrame(t, frame, self.sensors.sample(self._drive_state(t)), self.drive.state)

    def _advance(self, t: float) -> None:
        dt = self.dt
        self._schedule(t, dt, self.drive.steady())
        happened = self.drive.update(dt, t, self.conveyor.on_belt())
        if happened is not None:
            self._on_drive_event(happened, t)
        self._update_fault(t)
        if self._supplier_at is not None and t >= self._supplier_at:
            self._supplier_at = None  # new blanks: the cartons fed from now on look different
            self.conveyor.product = (self.conveyor.product + 1) % len(self.look.products)
            self._setup_product = self.conveyor.product
        if self._clear_at is not None and t >= self._clear_at:
            self.conveyor.clear_jam()
            self._clear_at = None
        ev = self._active
        self._slip = 0.0
        if ev is not None and ev.kind == "belt_slip" and ev.jam_onset is None:
            self._slip = fl.look(ev, ev.severity, t).slip
        v = self.drive.speed_su
        self._moved = self.conveyor.advance(v, self._slip, dt, self.drive.feeding, sc.OUT_SPEED)
        self._log_state(t)
        if self._live:
            self._live = [d for d in self._live if d.end >= t]

    def _log_state(self, t: float) -> None:
        st = self.drive.state
        if not self._states or self._states[-1][0] != st:
            self._states.append([st, t])

    def _drive_state(self, t: float) -> DriveState:
        m = self._moved
        ev = self._active
        dip = fl.glue_dip(ev, t) if ev is not None else 0.0
        slip = self._slip
        v = self.drive.speed_su * sc.M_PER_SU
        return DriveState(
            t=t,
            drive_mps=v,
            belt_mps=v * (1.0 - slip),
            drive_on=self.drive.drive_on,
            cartons_on_belt=self.conveyor.on_belt(),
            jam_load=self.drive.jam_load,
            slip=slip,
            glue_shots=m.glue_shots if m else 0,
            glue_dip=dip,
            placed=m.placed if m else 0,
            count=self.conveyor.count,
            applied_cpm=self.drive.applied,
        )

    # ----------------------------------------------------------------- events
    def _draw_precursor(self) -> float:
        lo, hi = self.cfg.precursor_seconds
        return float(self._rng.uniform(lo, hi))

    def _draw_kind(self) -> str:
        types = self._fault_types
        return types[int(self._rng.integers(len(types)))]

    def _schedule(self, t: float, dt: float, steady: bool) -> None:
        if self._t_nuis.tick(dt):
            self._add_disturbances([random_disturbance(self._rng, t)])
            self._t_nuis.fired()
        if not steady:
            return
        quiet = self._active is None
        if self._t_speed.tick(dt) and quiet and self.drive.limit_settled():
            lo, hi = self.cfg.speed_range
            self.drive.operator_target = self.cfg.setpoint_cpm * float(self._rng.uniform(lo, hi))
            self._t_speed.fired()
        if self._t_change.tick(dt) and quiet:
            self.drive.start_changeover(t)
            self._t_change.fired()
            return
        due = self._t_fault.tick(dt)
        if self._forced is not None:
            kind, want = self._forced
            if self._try_fault(t, kind, self._want_d if want is None else want):
                self._forced = None
        elif due and self._try_fault(t, self._want_kind, self._want_d):
            self._t_fault.fired()
            self._want_d = self._draw_precursor()
            self._want_kind = self._draw_kind()

    def _try_fault(self, t: float, kind: str, want: float) -> bool:
        if self._active is not None or not self.drive.quiet():
            return False
        cfg = self.cfg
        ev = start_fault(kind, want, self._k, cfg.fps, self._clip_frames, self._horizon,
                         self.conveyor, self.drive)  # fmt: skip
        if ev is None:
            return False
        ev.sign = 1.0 if self._rng.random() < 0.5 else -1.0
        self._events.append(ev)
        self._active = ev
        return True

    def _update_fault(self, t: float) -> None:
        ev, cfg = self._active, self.cfg
        if ev is None:
            return
        fraction, lead = cfg.mitigation_fraction, cfg.mitigation_lead_seconds
        if not advance_fault(ev, t, self.conveyor, self.drive, fraction, lead):
            self._active = None

    def _on_drive_event(self, happened: str, t: float) -> None:
        ev = self._active
        if happened == "stopped" and ev is not None and ev.jam_onset is not None:
            ev.stopped_at = t
            ev.line_stopped_until = self.drive.stop_until
            self._plan_clearing(t)
        elif happened == "restarted":
            self.conveyor.clear_jam()
            self._clear_at = None
            if ev is not None and ev.jam_onset is not None:
                ev.ended = True
                self._active = None
        elif happened == "changeover_stopped":
            self._plan_changeover(t)
        elif happened == "product_change":
            others = [i for i in range(len(self.look.products)) if i != self.conveyor.product]
            if others:
                self.conveyor.product = others[int(self._rng.integers(len(others)))]
            self._setup_product = self.conveyor.product

    def _plan_clearing(self, t: float) -> None:
        stop = self.cfg.jam_stop_seconds
        stuck = self.conveyor.find(self.conveyor.stuck) if self.conveyor.stuck is not None else None
        hand = clearing_hand(t, stuck.x if stuck is not None else sc.END_X, stop)
        self._add_disturbances([hand])
        self._clear_at = hand.start + hand.duration / 2

    def _plan_changeover(self, t: float) -> None:
        self._add_disturbances(changeover_hands(t, self.drive.stop_until))

    def _add_disturbances(self, items: list[Disturbance]) -> None:
        self._disturbances.extend(items)
        self._live.extend(items)

    # ----------------------------------------------------------------- picture
    def _view(self, *, counterfactual: bool, with_nuisances: bool) -> View:
        t, ev = self.t, self._active
        look, fault_id, drift = fl.NO_LOOK, -1, 0.0
        if ev is not None and not counterfactual:
            look, fault_id = fl.look(ev, ev.severity, t), ev.carton
        if counterfactual and ev is not None and ev.kind == "belt_slip":
            drift = self.conveyor.slip_drift
        poses, by_id = carton_poses(self.conveyor, fault_id, look, drift, self._frame_jit)
        if not counterfactual:
            self._pose_map = by_id
        nuis = []
        if with_nuisances:
            nuis = [n for d in self._live if d.start <= t <= d.end and (n := d.at(t))]
        return make_view(
            self.conveyor, poses, nuis, self._setup_product, drift, self._gain, self._lcg
        )
