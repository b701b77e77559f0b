"""From line state to a :class:`~foresight.sim.render.View`: carton poses and moving parts."""

from __future__ import annotations

import math

from foresight.sim import faults as fl
from foresight.sim import scene as sc
from foresight.sim.conveyor import BELT, OUT, PILED, STUCK, Carton, Conveyor
from foresight.sim.render import CartonPose, Nuisance, View


def carton_pose(c: Carton, look: fl.FaultLook, drift: float, jit: float) -> CartonPose:
    """How carton ``c`` is drawn: status-dependent pose plus the fault's ``look`` (if any).

    ``drift`` shifts cartons on the belt (belt-slip counterfactual), ``jit`` is this frame's
    common vibration of the belt in scene units.
    """
    length = c.length
    x = c.x
    if drift and c.status == BELT:
        x += drift - c.drift0
    y = sc.BELT_TOP + c.y_jit
    angle, pivot = c.angle, 0.0
    flap = sc.plow_flap_angle(x - length / 2, c.flap_open)
    st = c.status
    if st == BELT:
        y += jit
    elif st == OUT:
        u = (x - length / 2 - (sc.END_X - 2.0)) / (sc.OUT_X0 + 2.0 - (sc.END_X - 2.0))
        y += (sc.OUT_TOP - sc.BELT_TOP) * sc.smoothstep(u)
        angle -= 7.0 * math.sin(math.pi * min(1.0, max(0.0, u)))
    elif st == STUCK:
        angle, pivot = angle + 3.0, -length / 2
    elif st == PILED:
        angle, pivot = angle + min(30.0, 3.5 * c.press), -length / 2
        y -= min(2.5, 0.3 * c.press)
    if look.extra_flap:
        k = 1.0
        if look.flap_after_glue:
            k = sc.smoothstep((x + length / 2 - sc.GLUE_X) / 4.0)
        flap += look.extra_flap * k
    if look.tilt:
        angle += look.tilt
        pivot = -length / 2 if look.tilt > 0 else length / 2
    return CartonPose(c.product, x, y, angle, pivot, flap)


def carton_poses(
    conv: Conveyor, fault_id: int, look: fl.FaultLook, drift: float, jit: float
) -> tuple[list[CartonPose], dict[int, CartonPose]]:
    """Poses in drawing order (a double-fed carton behind its host) and a map id -> pose."""
    poses: list[CartonPose] = []
    by_id: dict[int, CartonPose] = {}
    for c in conv.cartons:
        is_fault = c.id == fault_id
        p = carton_pose(c, look if is_fault else fl.NO_LOOK, drift, jit)
        if is_fault and look.double:
            poses.append(p._replace(x=p.x + look.double_dx, y=p.y + look.double_dy))
        poses.append(p)
        by_id[c.id] = p
    return poses, by_id


def make_view(
    conv: Conveyor,
    poses: list[CartonPose],
    nuisances: list[Nuisance],
    product_set: int,
    drift: float,
    gain: tuple[float, float, float],
    lcg: int,
) -> View:
    """The renderer's input for one frame."""
    belt = conv.belt_pos + drift
    return View(
        product_set=product_set,
        belt_phase=belt,
        pulley_angle=belt / (sc.PULLEY_R + sc.BELT_THICK / 2),
        feeder_angle=math.pi / 2 + 2 * math.pi * (conv.drive_pos - 8.0 - sc.X_PLACE) / sc.PITCH,
        eye_blocked=conv.eye_blocked(),
        cartons=tuple(poses),
        nuisances=tuple(nuisances),
        gain=gain,
        noise_index=lcg >> 58,
        noise_row=(lcg >> 20) & 0xFFFF,
    )
