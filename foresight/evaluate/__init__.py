"""The ``foresight evaluate`` benchmark: metrics, baseline scorers and figures (pure pieces)."""

from __future__ import annotations
