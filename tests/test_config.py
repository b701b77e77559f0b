"""Configuration: layering, presets, secrets, and one clear line for every kind of error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from foresight.cli import main
from foresight.config import load_config, to_toml
from foresight.errors import ConfigError

SAMPLE = Path(__file__).parent.parent / "data_samples" / "line.toml"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "line.toml"
    p.write_text(text)
    return p


def test_layers_later_wins(tmp_path):
    p = _write(tmp_path, "[sim]\nfps = 30.0\nwidth = 96\n")
    cfg = load_config(
        p, environ={"FORESIGHT_SIM__WIDTH": "80"}, overrides=["sim.seed=5"], preset="tiny"
    )
    assert cfg.sim.fps == 30.0  # file over preset (tiny sets 20)
    assert cfg.sim.width == 80  # environment over file
    assert cfg.sim.seed == 5  # --set over all
    assert cfg.sim.height == 64  # preset over defaults
    assert cfg.preset == "tiny"


def test_preset_from_file_and_env(tmp_path):
    p = _write(tmp_path, 'preset = "tiny"\n')
    assert load_config(p, environ={}).data.image_size == 32
    assert load_config(environ={"FORESIGHT_PRESET": "tiny"}).data.image_size == 32


def test_sample_line_config_loads():
    cfg = load_config(SAMPLE, environ={})
    assert cfg.line.name == "cartoner-3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sim]\nfsp = 3\n", "key 'sim.fsp': unknown key"),
        ("[simulator]\nfps = 3\n", "key 'simulator': unknown key"),
        ('[sim]\nfps = "fast"\n', "key 'sim.fps': Input should be a valid number"),
        ("[sim]\nfps = -3\n", "key 'sim.fps': Input should be greater than 0 (got -3)"),
        ("[data]\nimage_size = 4096\n", "key 'data.image_size': Input should be less than"),
        ("[sim]\nspeed_range = [1.2, 0.5]\n", "speed_range must satisfy"),
        ("[sim\n", "invalid TOML"),
        ('[plc]\npassword = "x"\n', "key 'plc.password': secrets may not be written"),
        ("[model]\ncontext = 40\n", "data.window (40 frames) is shorter than model.context"),
    ],
)
def test_file_errors_name_file_key_and_problem(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p, environ={})
    msg = str(e.value)
    assert expected in msg
    assert str(p) in msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_env_and_override_errors_name_their_source():
    with pytest.raises(ConfigError, match="environment FORESIGHT_SIM__FPS: key 'sim.fps'"):
        load_config(environ={"FORESIGHT_SIM__FPS": "abc"})
    with pytest.raises(ConfigError, match="--set sim.width: key 'sim.width'"):
        load_config(environ={}, overrides=["sim.width=5"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(environ={}, overrides=["sim.width"])
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config(environ={}, preset="huge")


def test_secrets_from_env_and_protected_file_are_masked(tmp_path):
    cfg = load_config(environ={"FORESIGHT_INFLUX__TOKEN": "s3cret"})
    assert cfg.influx.token.get_secret_value() == "s3cret"
    assert "s3cret" not in to_toml(cfg)
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o600)
    cfg = load_config(environ={"FORESIGHT_PLC__PASSWORD_FILE": str(secret)})
    assert cfg.plc.password.get_secret_value() == "hunter2"
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_config(environ={"FORESIGHT_PLC__PASSWORD_FILE": str(secret)})
    with pytest.raises(ConfigError, match="not found"):
        load_config(environ={"FORESIGHT_PLC__PASSWORD_FILE": str(tmp_path / "none")})


def test_config_show_cli(tmp_path, capsys):
    assert main(["config", "show", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert 'preset = "tiny"' in out and "[sim]" in out and "image_size = 32" in out
    bad = _write(tmp_path, "[sim]\nfps = -1\n")
    assert main(["config", "show", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "sim.fps" in err
