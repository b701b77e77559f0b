"""The real thing: a running monitor (simulated line, PLC simulator, sample model made to alarm),
the dashboard started by ``foresight dashboard`` on a free loopback port, and Debian's
chromium driven by Selenium. Asserts the live trend and the alarm appear; saves screenshots."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SAMPLE_MODEL = Path(__file__).parent.parent / "data_samples" / "model"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1100",
)
# register() + cmd_dashboard exactly as `foresight dashboard` will run them once cli.py hooks it
DASHBOARD = (
    "import argparse, sys\n"
    "from foresight.dashboard.cli import register\n"
    "p = argparse.ArgumentParser(); register(p.add_subparsers())\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when root can."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found and os.geteuid() == 0 and shutil.which("apt-get"):
        cmd = "apt-get update -qq && apt-get install -y -qq chromium chromium-driver"
        subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=900, check=False)
        found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found:
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium "
            "chromium-driver, as root); they are missing and could not be installed here"
        )
    return found  # type: ignore[return-value]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hot_model(tmp: Path) -> Path:
    """The sample model with an alarm level every score exceeds (and no occlusion gate, which
    would withhold such scores): it slows the line at once."""
    out = tmp / "models" / "hot"
    shutil.copytree(SAMPLE_MODEL, out)
    card = json.loads((out / "model.json").read_text())
    levels = {"watch": -100.0, "alarm": -100.0, "clear": -200.0, "baseline": -300.0}
    card["calibration"]["thresholds"] = levels
    card["calibration"].setdefault("residuals", {})["occlusion_fraction"] = 1.0
    # a score above every level never settles: a fixed settling time after the cold start
    card["calibration"].setdefault("alarms", {})["settle_max_s"] = 0.0
    (out / "model.json").write_text(json.dumps(card))
    return out


def _stop(proc: subprocess.Popen, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.wait(5)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"dashboard exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).read() == b"ok":
                return
        time.sleep(0.3)
    pytest.fail(f"dashboard not up after {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_text(
    driver,
    texts: tuple[str, ...],
    timeout: float,
    reload_s: float | None = None,
    pattern: str | None = None,
):
    """Wait until the page shows every one of ``texts`` and matches ``pattern`` (a regular
    expression, when given), reloading every ``reload_s``."""
    from selenium.webdriver.common.by import By

    end = time.monotonic() + timeout
    last_reload = time.monotonic()
    body = ""
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            body = driver.find_element(By.TAG_NAME, "body").text
        if all(t in body for t in texts) and (pattern is None or re.search(pattern, body)):
            return body
        if reload_s and time.monotonic() - last_reload > reload_s:
            driver.refresh()
            last_reload = time.monotonic()
        time.sleep(0.5)
    missing = [t for t in texts if t not in body]
    if pattern is not None and not re.search(pattern, body):
        missing.append(f"/{pattern}/")
    pytest.fail(f"page never showed {missing}; it showed:\n{body[-2000:]}")


@pytest.mark.slow
def test_dashboard_in_chromium_against_a_running_monitor(tmp_path, capsys):
    pytest.importorskip("selenium", reason="pip install selenium (test extras)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, chromedriver = _chromium()
    port = _free_port()
    over = [
        f"monitor.model={_hot_model(tmp_path)}",
        f"monitor.health_file={tmp_path / 'monitor' / 'health.json'}",
        f"store.path={tmp_path / 'store' / 'foresight.sqlite'}",
        "monitor.speed=3",
        "monitor.duration_s=90",
        "plc.heartbeat_s=0.2",
    ]
    sets = [x for o in over for x in ("--set", o)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    mon_log, dash_log = tmp_path / "monitor.log", tmp_path / "dashboard.log"
    with mon_log.open("w") as ml, dash_log.open("w") as dl:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "foresight.cli", "monitor", "--preset", "tiny", *sets],
            stdout=ml, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
        dash = subprocess.Popen(
            [sys.executable, "-c", DASHBOARD, "dashboard", "--preset", "tiny", *sets,
             "--port", str(port)],
            stdout=dl, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/_stcore/health", dash, dash_log)
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(options=opts, service=Service(chromedriver))
        driver.get(f"{url}/Live")
        try:
            # The state tile can show the slow-down a refresh before the trend has its point:
            # wait (reloading) until the trend shades it too.
            shaded = r"\b[1-9]\d* slow-down\(s\) shaded"
            texts = ("Live residual trend", "model steps", "slowdown")
            body = _wait_text(driver, texts, 90, reload_s=10, pattern=shaded)
        finally:
            if monitor.poll() is not None:
                print(mon_log.read_text()[-3000:])
        assert re.search(shaded, body), body
        figures = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
        assert figures and figures[0].size["height"] > 100  # the trend figure was drawn
        live_png = tmp_path / "dashboard_live.png"
        driver.save_screenshot(str(live_png))

        driver.get(f"{url}/Alarms")
        _wait_text(driver, ("Alarm log", "Slow-down at", "peak score"), 60, reload_s=5)
        alarms_png = tmp_path / "dashboard_alarms.png"
        driver.save_screenshot(str(alarms_png))
        with capsys.disabled():
            print(f"\nscreenshots: {live_png} {alarms_png}")
        assert live_png.stat().st_size > 10_000 and alarms_png.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        _stop(dash, group=True)
        _stop(monitor, group=False)
