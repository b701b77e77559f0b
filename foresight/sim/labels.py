"""Ground truth as label records (the content of ``labels.json``), times relative to each file."""

from __future__ import annotations

from typing import Any

from foresight.sim import control
from foresight.sim.faults import FaultEvent

Record = dict[str, Any]


def clip_name(index: int) -> str:
    """File name of clip ``index``."""
    return f"clip_{index:04d}.mp4"


def file_table(frames: int, per_clip: int, fps: float) -> list[Record]:
    """{"file", "start", "duration"} for ``frames`` frames cut into clips of ``per_clip``."""
    return [
        {
            "file": clip_name(k),
            "start": _r(k0 / fps),
            "duration": _r(min(per_clip, frames - k0) / fps),
        }
        for k, k0 in enumerate(range(0, frames, per_clip))
    ]


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def fault_record(
    ev: FaultEvent, files: list[Record], fps: float, per_clip: int, stop_s: float
) -> Record:
    """One "faults" entry: the file holding the precursor start, times relative to that file."""
    idx = min(len(files) - 1, round(ev.precursor_start * fps) // per_clip)
    f0 = files[idx]["start"]
    until = ev.line_stopped_until
    if ev.jam_onset is not None and until is None:  # the run ended while the drive tripped
        until = ev.jam_onset + control.TRIP_DELAY + control.DECEL + stop_s
    return {
        "file": files[idx]["file"],
        "type": ev.kind,
        "precursor_start": _r(ev.precursor_start - f0),
        "jam_onset": _r(None if ev.jam_onset is None else ev.jam_onset - f0),
        "line_stopped_until": _r(None if until is None else until - f0),
    }


def build_labels(
    events: list[FaultEvent],
    segments: list[tuple[str, float, float]],
    files: list[Record],
    fps: float,
    per_clip: int,
    jam_stop_seconds: float,
) -> dict[str, list[Record]]:
    """labels.json content: faults, per-file line-state segments and the file table."""
    faults = [fault_record(ev, files, fps, per_clip, jam_stop_seconds) for ev in events]
    states = []
    for f in files:
        fs, fe = f["start"], f["start"] + f["duration"]
        for st, a, b in segments:
            lo, hi = max(a, fs), min(b, fe)
            if hi - lo > 1e-9:
                states.append(
                    {"file": f["file"], "state": st, "start": _r(lo - fs), "end": _r(hi - fs)}
                )
    return {"faults": faults, "line_states": states, "files": files}
