"""Benchmarks: commands that measure and write their figures into BENCHMARKS.md."""
