"""Foresight: a world model beside a packaging line that slows the feeder before a jam forms."""

from __future__ import annotations

__version__ = "0.1.0"
