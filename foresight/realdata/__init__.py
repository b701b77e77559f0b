"""Real-data benchmarks of the sensor path: SKAB, NAB and Tennessee Eastman (issue 7)."""
