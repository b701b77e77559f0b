"""The simulated camera's stream as a consumer receives it: encoded, then decoded.

Recorded footage of the simulated line is mp4v (``simulate`` writes it); a real camera's live
stream is compressed the same way its recordings are. Rendered frames fed live without a codec
are a different picture: their camera noise is intact where the codec smooths it, and the
residual of a model trained on recordings rises on them (measured with a tiny model: median
score 1.8 replaying recordings of its own line, 5.3 on the same line live without a codec).

:class:`CodecStream` gives the live consumers (the monitor's simulated source, the drift scan,
streamed training) frames that went through the same encoder, in groups of ``GOP`` frames (one
key frame and the frames predicted from it, as in the files). A group is decoded once it is
complete, so the stream runs ``GOP`` frames behind the renderer, like the latency of an IP
camera (0.48 s at 25 fps); every frame keeps its own time stamp and sensors.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from foresight.errors import ForesightError

GOP = 12  #: frames per encoded group: the mp4v writer's key-frame interval
FOURCC = "mp4v"


def _scratch() -> Path:
    """A RAM-backed scratch folder when there is one (the group files are short-lived)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="foresight-cam-", dir=base))


class CodecStream:
    """Wraps a ``LineSim``: ``step()`` returns its frames after an mp4v round trip."""

    def __init__(self, line: Any, fps: float, gop: int = GOP):
        self.line, self.fps, self.gop = line, float(fps), int(gop)
        self._out: deque[Any] = deque()
        self._dir = _scratch()
        self._file = self._dir / "group.mp4"

    def __getattr__(self, name: str) -> Any:  # the line's own state (faults, setpoint, ...)
        return getattr(self.line, name)

    def step(self) -> Any:
        """The next frame record (the line's ``step()`` result with its frame decoded)."""
        if not self._out:
            self._fill()
        return self._out.popleft()

    def _fill(self) -> None:
        recs = [self.line.step() for _ in range(self.gop)]
        decoded = self.roundtrip([r.frame for r in recs])
        self._out.extend(r._replace(frame=img) for r, img in zip(recs, decoded, strict=True))

    def roundtrip(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """RGB frames encoded as one mp4v group and decoded again (RGB)."""
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(self._file), cv2.VideoWriter_fourcc(*FOURCC), self.fps, (w, h))
        if not writer.isOpened():
            raise ForesightError(f"{self._file}: OpenCV cannot open an {FOURCC} writer")
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        cap = cv2.VideoCapture(str(self._file))
        out = []
        for f in frames:
            ok, img = cap.read()
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if ok else f)
        cap.release()
        return out

    def close(self) -> None:
        """Remove the scratch folder."""
        self._file.unlink(missing_ok=True)
        try:
            self._dir.rmdir()
        except OSError:
            pass

    def __del__(self) -> None:
        self.close()
