"""``foresight ingest``: exit status, one line per failure, no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foresight.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("FORESIGHT_"):
            monkeypatch.delenv(name)


def test_ingest_ok_returns_zero(tmp_path, clips, capsys):
    video = clips.video(tmp_path / "in" / "a.mp4", 40, 20.0)
    clips.csv(
        video.with_suffix(".csv"),
        np.arange(0, 2, 0.1),
        [
            "belt_speed",
            "motor_current",
            "vibration_rms",
            "glue_pressure",
            "photo_eye_count",
            "feeder_setpoint",
        ],
    )
    out = tmp_path / "out"
    args = ["ingest", str(tmp_path / "in"), "--out", str(out), "--preset", "tiny", "-q"]
    assert main([*args, "--workers", "2", "--roi", "0", "0", "64", "64"]) == 0
    text = capsys.readouterr().out
    assert "1 ingested (20 frames, 1 windows)" in text and "failed" not in text.split(",")[0]
    source = json.loads((out / "manifest.json").read_text())["sources"][0]
    assert source["roi"] == [0, 0, 64, 64] and source["frames"] == 20


def test_failed_file_returns_one_and_one_line(tmp_path, clips, capsys):
    clips.video(tmp_path / "in" / "a.mp4", 40, 20.0)
    (tmp_path / "in" / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 64)
    (tmp_path / "in" / "b.mp4").write_bytes(b"")
    args = ["ingest", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--preset", "tiny"]
    assert main([*args, "-q"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("failed: ") and "b.mp4: cannot open" in lines[0]
    assert lines[1].startswith("failed: ") and "broken.mkv: cannot open" in lines[1]
    assert "1 ingested" in lines[2] and "2 failed" in lines[2]
    assert "Traceback" not in captured.out + captured.err
    assert main([*args, "-q", "--allow-failures"]) == 0


def test_missing_input_is_one_line_error(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "gone"), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"foresight: error: {tmp_path / 'gone'}: no such file or directory"
