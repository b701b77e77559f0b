"""What a drift changed, and what it looks like: a plant change or a developing fault.

A change of the plant (new lighting, a camera knocked, another carton supplier) moves how the
*picture* looks nearly everywhere, or the model's latent state, while the process sensors stay
where they were: it is a reason to retrain. A developing fault (bearing wear raising vibration,
a glue pump weakening) moves one or a few *sensors* steadily while the picture is as before: it
is a maintenance alert and must not be retrained away, or the model learns to call the fault
normal. ``explain`` says which one a drift looks like; the operator decides.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from foresight.drift.config import DriftConfig
from foresight.residuals.tracker import COMPONENTS
from foresight.store.spool import Point

#: the kinds a drift event can have, with what the operator is told
ADVICE: dict[str, str] = {
    "plant_change": "the picture changed broadly or all along the line while the sensors did not "
    "(lighting, camera, carton supplier): a reason to retrain",
    "developing_fault": "sensor residuals rise steadily while the picture does not: a "
    "maintenance alert; do not retrain it away",
    "unclear": "the residuals rose without a clear pattern: inspect the line before deciding",
}


#: changed regions reaching across this share of the picture (rows or columns) are a change all
#: along the line, not a local fault: a new carton supplier changes every carton on the belt, a
#: band across the picture (measured: 11 % of the regions, spanning 88 % of its width), while a
#: fault grows at one place
SPREAD = 0.5


def spread(regions: tuple[int, ...], n: int) -> float:
    """The larger of the row and column extents of ``regions`` (row-major indices of a square
    grid of ``n`` cells), as a share of the grid's side."""
    side = int(round(math.sqrt(n)))
    if not regions or side * side != n:
        return 0.0
    rows, cols = [r // side for r in regions], [r % side for r in regions]
    return max(max(rows) - min(rows) + 1, max(cols) - min(cols) + 1) / side


@dataclass(frozen=True)
class DriftEvent:
    """A latched drift: when, how much the score rose, what changed and what it looks like."""

    t: float  # stream time of the detection, s
    kind: str  # a key of ADVICE
    rise: float  # recent minus reference median score (stage-2 units)
    samples: int  # detector samples seen
    regions: tuple[int, ...] = ()  # row-major indices of the regions whose residual rose
    region_fraction: float = 0.0
    sensors: dict[str, float] = field(default_factory=dict)  # sensor -> rise (robust sigmas)
    components: dict[str, float] = field(default_factory=dict)  # component -> rise
    time_ns: int = 0  # wall clock of the detection

    @property
    def advice(self) -> str:
        """What the operator is told."""
        return ADVICE[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (event files, notebooks)."""
        return {**asdict(self), "regions": list(self.regions), "advice": self.advice}

    def to_point(self, line: str) -> Point:
        """The store's ``drift`` point: the ``write_drift`` schema (tag ``kind``, fields
        ``detected``, ``statistic`` = the rise) plus what changed (tags ``sensors``, fields
        ``region_fraction``, ``regions_changed``, ``rise_<sensor>``, ``rise_<component>``)."""
        tags = {"line": line, "kind": self.kind}
        if self.sensors:  # InfluxDB drops empty tag values
            tags["sensors"] = ",".join(self.sensors)
        fields: dict[str, Any] = {
            "detected": 1,
            "statistic": float(self.rise),
            "region_fraction": float(self.region_fraction),
            "regions_changed": len(self.regions),
        }
        fields |= {f"rise_{k}": float(v) for k, v in self.sensors.items()}
        fields |= {f"rise_{k}": float(v) for k, v in self.components.items() if math.isfinite(v)}
        return Point("drift", tags, fields, self.time_ns or time.time_ns())


def explain(
    cfg: DriftConfig,
    ref: dict[str, np.ndarray],
    recent: dict[str, np.ndarray],
    channels: tuple[str, ...],
    t: float,
    rise: float,
    samples: int,
) -> DriftEvent:
    """Compare recent per-region, per-sensor and per-component levels with the reference."""
    d_regions = np.nan_to_num(recent["regions"] - ref["regions"], nan=0.0)
    regions = tuple(int(i) for i in np.flatnonzero(d_regions > cfg.region_z))
    fraction = len(regions) / d_regions.size if d_regions.size else 0.0
    d_sens = np.nan_to_num(recent["sensors"] - ref["sensors"], nan=0.0)
    names = channels if len(channels) == d_sens.size else tuple(f"s{i}" for i in range(d_sens.size))
    pairs = zip(names, d_sens, strict=True)
    sensors = {n: round(float(v), 3) for n, v in pairs if v > cfg.sensor_z}
    with np.errstate(all="ignore"):
        comp = np.nanmax(recent["parts"] - ref["parts"], axis=-1)
    components = {c: round(float(v), 3) for c, v in zip(COMPONENTS, comp, strict=True)}
    latent_up = components.get("latent", 0.0) > cfg.region_z
    broad = fraction >= cfg.broad_fraction or spread(regions, d_regions.size) >= SPREAD
    if sensors and not broad:
        kind = "developing_fault"
    elif not sensors and (broad or latent_up):
        kind = "plant_change"
    else:
        kind = "unclear"
    return DriftEvent(
        t=float(t),
        kind=kind,
        rise=round(float(rise), 4),
        samples=samples,
        regions=regions,
        region_fraction=round(float(fraction), 4),
        sensors=dict(sorted(sensors.items(), key=lambda kv: -kv[1])),
        components=components,
        time_ns=time.time_ns(),
    )


def write_event(store, event: DriftEvent) -> None:
    """Record ``event`` in the store (local spool, forwarded to InfluxDB, read by the dashboard)."""
    store.write([event.to_point(store.line)])


def event_json(event: DriftEvent) -> str:
    """One JSON line for an event file."""
    return json.dumps(event.to_dict(), sort_keys=True)
