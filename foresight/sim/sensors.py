"""Line sensors sampled at the camera frame rate, physically tied to what the camera sees."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from foresight.schema import SENSOR_CHANNELS

IDLE_A = 1.1  #: drive enabled, no motion
OFF_A = 0.25  #: drive disabled (line stopped)
AMP_PER_MPS = 9.0  #: motor current per m/s of belt
AMP_PER_CARTON = 0.07
JAM_AMP = 7.0  #: current added by a full pile-up just before the drive trips
VIB_PER_MPS = 5.2  #: mm/s of vibration per m/s of belt
GLUE_BAR = 2.5
_BLOCK = 4096


class NormalStream:
    """Standard normal numbers drawn in blocks (cheap one at a time, deterministic)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf = rng.standard_normal(_BLOCK)
        self._i = 0

    def __call__(self) -> float:
        """The next standard normal number."""
        if self._i >= _BLOCK:
            self._buf = self._rng.standard_normal(_BLOCK)
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return float(v)


class DriveState(NamedTuple):
    """What the line did during the last frame, as the sensors feel it."""

    t: float
    drive_mps: float  #: drive (motor side) speed
    belt_mps: float  #: belt speed (lower than the drive when the belt slips)
    drive_on: bool
    cartons_on_belt: int
    jam_load: float  #: 0..1 pile-up load before the trip
    slip: float
    glue_shots: int  #: glue shots fired this frame
    glue_dip: float  #: bar, pump hiccup of a glue miss
    placed: int  #: cartons placed by the feeder this frame
    count: int  #: photo-eye count
    applied_cpm: float


class SensorModel:
    """Stateful sensor simulation; ``sample`` returns one float32 row in SENSOR_CHANNELS order."""

    channels = SENSOR_CHANNELS

    def __init__(self, rng: np.random.Generator, dt: float, wear_per_hour: float, v_nom: float):
        self._n = NormalStream(rng)
        self._dt = dt
        self._wear = wear_per_hour
        self._v_nom = max(v_nom, 1e-6)
        self._cur_ar = 0.0
        self._vib_ar = 0.0
        self._glue_wander = 0.0
        self._glue_draw = 0.0
        self._place_pulse = 0.0

    def sample(self, d: DriveState) -> np.ndarray:
        """Sensor readings for the frame described by ``d``."""
        dt = self._dt
        moving = d.belt_mps > 1e-4
        belt = d.belt_mps + 0.0015 * self._n() if moving else 0.0
        belt = max(0.0, belt)

        self._place_pulse = self._place_pulse * math.exp(-dt / 0.08) + 0.18 * d.placed
        self._cur_ar = 0.9 * self._cur_ar + 0.02 * self._n()
        if d.drive_on:
            cur = IDLE_A + AMP_PER_MPS * d.drive_mps
            cur += AMP_PER_CARTON * d.cartons_on_belt * (d.drive_mps > 0)
            cur += self._place_pulse + JAM_AMP * d.jam_load**1.5
            cur -= 3.0 * AMP_PER_MPS * d.drive_mps * d.slip
            cur += 3.5 * d.slip * self._n()
        else:
            cur = OFF_A
        cur += self._cur_ar + 0.03 * self._n()

        self._vib_ar = 0.95 * self._vib_ar + 0.03 * self._n()
        if d.drive_mps > 1e-4:
            ratio = d.drive_mps / self._v_nom
            vib = 0.12 + VIB_PER_MPS * d.drive_mps + self._wear * (d.t / 3600.0) * ratio
            vib += self._vib_ar + 2.5 * d.jam_load + 6.0 * d.slip * abs(self._n())
        else:
            vib = 0.08 + 0.2 * abs(self._vib_ar)
        vib = max(0.0, vib + 0.01 * self._n())

        self._glue_wander = 0.9995 * self._glue_wander + 0.0015 * self._n()
        self._glue_draw = self._glue_draw * math.exp(-dt / 0.12) + 0.05 * d.glue_shots
        glue = GLUE_BAR + self._glue_wander - self._glue_draw - d.glue_dip + 0.008 * self._n()
        return np.array([belt, cur, vib, glue, float(d.count), d.applied_cpm], dtype=np.float32)
