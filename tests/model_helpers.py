"""Small synthetic footage for model tests: blocks moving on a belt at a setpoint-driven speed."""

from __future__ import annotations

import numpy as np

from foresight.schema import SENSOR_CHANNELS

CHANNELS = SENSOR_CHANNELS


def belt_clip(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames (n, size, size, 3) uint8 and sensors (n, 6) of a toy moving belt."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, size, size, 3), 60, np.uint8)
    frames[:, size // 2 :, :, :] = 90  # belt
    sens = np.zeros((n, len(CHANNELS)), np.float32)
    pos, count = rng.uniform(0, size), 0.0
    setpoint = rng.uniform(0.8, 1.2)
    for i in range(n):
        if rng.random() < 0.02:
            setpoint = rng.uniform(0.8, 1.2)
        speed = 1.5 * setpoint
        pos = (pos + speed) % size
        for k in range(2):
            x = int(pos + k * size / 2) % size
            frames[i, size // 2 - 4 : size // 2, max(0, x - 3) : x + 3] = (200, 120, 40)
        if (pos - speed) % (size / 2) > pos % (size / 2):
            count += 1
        sens[i] = (speed, 5 + 2 * speed, 1 + 0.1 * speed, 2.5, count, setpoint * 100)
    sens[:, :4] += rng.normal(0, 0.02, (n, 4)).astype(np.float32)
    return frames, sens


class ArraySource:
    """In-memory windows with the WindowSource protocol used by training."""

    channels = CHANNELS

    def __init__(self, clips: list[tuple[np.ndarray, np.ndarray]], window: int, stride: int):
        self.window = window
        self.items = [(c, s) for c in clips for s in range(0, len(c[0]) - window + 1, stride)]

    def __len__(self) -> int:
        return len(self.items)

    def _get(self, i: int, window: int, offset: int = 0):
        (f, s), start = self.items[i]
        return f[start + offset : start + offset + window], s[
            start + offset : start + offset + window
        ]

    def batches(self, batch_size, rng, window=None):
        window = window or self.window
        while True:
            idx = rng.integers(0, len(self.items), batch_size)
            pairs = [self._get(int(i), window) for i in idx]
            yield np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def iter_windows(self, batch_size, limit=None):
        stop = len(self.items) if limit is None else min(limit, len(self.items))
        for b in range(0, stop - batch_size + 1, batch_size):
            pairs = [self._get(i, self.window) for i in range(b, b + batch_size)]
            yield np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def sources(size: int = 32, window: int = 16, seed: int = 0) -> tuple[ArraySource, ArraySource]:
    """Train and validation sources from different seeds."""
    train = ArraySource([belt_clip(400, size, seed + i) for i in range(3)], window, 4)
    val = ArraySource([belt_clip(200, size, seed + 100)], window, 8)
    return train, val
