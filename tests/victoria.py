"""A real VictoriaMetrics server for tests: installed from Debian if missing, run on loopback.

``binary()`` finds ``victoria-metrics`` or installs Debian's package (``apt-get update &&
apt-get install -y victoria-metrics``, root only) and otherwise raises ``Unavailable`` with the
reason, which tests turn into a skip. ``Victoria`` starts one server on a free 127.0.0.1 port
with its own data directory, can be stopped and restarted on the same port and data (an
outage), and reads points back through ``/api/v1/export``. VictoriaMetrics accepts InfluxDB's
v2 write API (``/api/v2/write``) and stores a field ``f`` of measurement ``m`` as the series
``m_f`` with the tags as labels, at millisecond precision.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACKAGE = "victoria-metrics"


class Unavailable(RuntimeError):
    """VictoriaMetrics is not installed and cannot be installed here (the reason says why)."""


def _which() -> str | None:
    found = shutil.which(PACKAGE)
    return found or (f"/usr/bin/{PACKAGE}" if os.access(f"/usr/bin/{PACKAGE}", os.X_OK) else None)


def binary() -> str:
    """Path of the ``victoria-metrics`` binary, installing Debian's package when needed."""
    found = _which()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{PACKAGE} is not installed and apt-get is not available")
    if os.geteuid() != 0:
        raise Unavailable(f"{PACKAGE} is not installed; run `apt-get install -y {PACKAGE}` as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", PACKAGE]):
        log.warning("installing %s: %s", PACKAGE, " ".join(cmd))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise Unavailable(f"`{' '.join(cmd)}` failed: {' '.join(tail)}")
    found = _which()
    if not found:
        raise Unavailable(f"{PACKAGE} installed but its binary is not on PATH")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Victoria:
    """One VictoriaMetrics process on 127.0.0.1 with its own data directory."""

    def __init__(self, exe: str, data: Path, port: int | None = None) -> None:
        self.exe, self.data, self.port = exe, Path(data), port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.data.with_suffix(".log")

    @property
    def url(self) -> str:
        """Base URL, also the InfluxDB ``url`` to write to."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Victoria:
        """Start the server and wait until ``/health`` answers OK."""
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.exe,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
        ]
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: {self._log.read_text()[-500:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:  # URLError is an OSError: not listening yet
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"victoria-metrics did not become healthy on {self.url}")

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after 10 s)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching the selector, as ``{"metric", "values", "timestamps"}`` dicts."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).read()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line]

    def samples(self, match: str, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Series matching ``match``, waiting until they hold ``expect`` samples in all."""
        end = time.monotonic() + timeout
        while True:
            series = self.export(match)
            if sum(len(s["values"]) for s in series) >= expect or time.monotonic() > end:
                return series
            time.sleep(0.2)

    def __enter__(self) -> Victoria:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
