"""Telemetry store: a durable local SQLite spool, forwarded to InfluxDB in the background."""

from __future__ import annotations

from foresight.store.api import EVENT_MEASUREMENTS, Series, Store, horizon_field
from foresight.store.config import InfluxConfig, StoreConfig
from foresight.store.influx import Forwarder, ForwarderStats, to_line
from foresight.store.spool import Point, Spool, SpoolStats, StoreError

__all__ = [
    "EVENT_MEASUREMENTS",
    "Forwarder",
    "ForwarderStats",
    "InfluxConfig",
    "Point",
    "Series",
    "Spool",
    "SpoolStats",
    "Store",
    "StoreConfig",
    "StoreError",
    "horizon_field",
    "to_line",
]
