"""The simulated cartoning line: ``line.LineSim`` (live) and ``generate.simulate_to_dir``."""
