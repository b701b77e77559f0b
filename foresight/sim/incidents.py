"""Fault lifecycle on the running line: start a precursor, resolve it on a slow-down, or jam."""

from __future__ import annotations

from foresight.sim import faults as fl
from foresight.sim.control import DECEL, TRIP_DELAY, Drive
from foresight.sim.conveyor import BELT, OUT, Conveyor


def start_fault(
    kind: str,
    want: float,
    frame: int,
    fps: float,
    clip_frames: int,
    horizon: float | None,
    conv: Conveyor,
    drive: Drive,
) -> fl.FaultEvent | None:
    """Start a ``kind`` precursor at ``frame`` if a suitable carton exists, else None.

    The jam it leads to lies in the same clip as its start and (with the stop that follows)
    before ``horizon`` seconds, so every labelled fault is complete in one file.
    """
    dt = 1.0 / fps
    cands = [(c.id, c.x, c.length) for c in conv.cartons if c.status == BELT]
    pick = fl.pick_carton(kind, cands, drive.speed_su, want, dt)
    if pick is None:
        return None
    cid, dur = pick
    k_jam = frame + max(1, round(dur * fps))
    if k_jam // clip_frames != frame // clip_frames:
        return None
    if horizon is not None and k_jam * dt + TRIP_DELAY + DECEL + 2 * dt > horizon:
        return None
    ev = fl.FaultEvent(kind, cid, frame * dt, k_jam * dt, drive.applied)
    carton = conv.find(cid)
    if kind == "glue_miss" and carton is not None:
        carton.glue_ok = False
    conv.hold = cid
    if kind == "belt_slip":
        conv.slip_drift = 0.0
        for c in conv.cartons:
            c.drift0 = 0.0
    return ev


def advance_fault(
    ev: fl.FaultEvent, t: float, conv: Conveyor, drive: Drive, fraction: float, lead: float
) -> bool:
    """Update ``ev`` at time ``t``; returns True while it still affects the line.

    A slow-down of the applied setpoint to ``(1 - fraction)`` of its value at precursor start,
    ``lead`` seconds or more before the jam would form, resolves the precursor; otherwise the jam
    forms when the carton reaches the transfer or the precursor runs out.
    """
    if ev.jam_onset is not None:
        return True
    if ev.mitigated_at is None:
        limit = (1.0 - fraction) * ev.setpoint_at_start + 1e-6
        if t <= ev.jam_at - lead + 1e-9 and drive.applied <= limit:
            ev.mitigated_at = t
            conv.hold = None
    ev.severity = fl.severity(ev, t)
    if ev.mitigated_at is not None:
        if ev.severity < fl.RESOLVED_BELOW:
            ev.severity, ev.ended = 0.0, True
            return False
        return True
    carton = conv.find(ev.carton)
    at_transfer = carton is not None and carton.x >= fl.jam_point(carton.length) - 1e-6
    if t >= ev.jam_at - 1e-9 or at_transfer:
        ev.jam_onset, ev.severity = t, 1.0
        if carton is None or carton.status not in (BELT, OUT):
            belt = [c for c in conv.cartons if c.status == BELT]
            carton = max(belt, key=lambda c: c.x) if belt else None
        if carton is not None:
            conv.stuck = ev.carton = carton.id
        conv.hold = None
        drive.start_jam(t)
    return True
