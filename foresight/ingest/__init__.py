"""Footage ingestion: recordings (video + optional sensor CSV) to memory-mapped training shards.

``run_ingest`` (``run.py``) drives it; ``discover`` finds videos and companions, ``source``
ingests one of them using ``video`` (decode, crop, resize, resample) and ``sensors`` (streamed
CSV interpolation); ``layout`` owns the on-disk format and ``dataset`` reads it for training.
Peak memory is independent of footage length: see ``foresight.ingest.run``.
"""

from __future__ import annotations

from foresight.ingest.dataset import ShardDataset
from foresight.ingest.layout import FORMAT
from foresight.ingest.run import IngestReport, run_ingest

__all__ = ["FORMAT", "IngestReport", "ShardDataset", "run_ingest"]
