"""Footage ingestion: recordings (video + optional sensor CSV) to memory-mapped training shards."""
