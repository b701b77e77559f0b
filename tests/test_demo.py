"""The README's main command: ``foresight demo`` runs the monitor and the dashboard on embedded
defaults (simulated line, PLC simulator, local store, the sample model), with no PLC, database
or camera, and starts faults on the line so a newcomer sees one within a minute."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_runs_monitor_and_dashboard_on_embedded_defaults(tmp_path):
    port = _free_port()
    cmd = [
        sys.executable, "-m", "foresight.cli", "demo", "--minutes", "0.6", "--fault-every", "10",
        "--set", f"dashboard.port={port}", "--set", "monitor.speed=2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    page = None
    try:
        end = time.monotonic() + 30
        while page is None and time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.status, r.read(2000).decode(errors="replace")
            except OSError:
                time.sleep(0.5)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert page is not None and page[0] == 200 and "streamlit" in page[1].lower()
    assert f"http://127.0.0.1:{port}" in out and "a flap_rise fault starts" in out
    health = json.loads((tmp_path / "runs" / "monitor" / "health.json").read_text())
    assert health["counters"]["steps"] > 300 and health["plc_ok"] is True
    assert (tmp_path / "runs" / "monitor" / "live" / "latest.npz").is_file()
    assert health["model"]  # the sample model, from data_samples/
