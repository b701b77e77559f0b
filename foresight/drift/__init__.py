"""Drift: a latched detector on the residual trend that tells a plant change from a fault."""

from foresight.drift.changes import ADVICE, DriftEvent, explain, write_event
from foresight.drift.config import DriftConfig
from foresight.drift.detector import DriftDetector

__all__ = ["ADVICE", "DriftConfig", "DriftDetector", "DriftEvent", "explain", "write_event"]
