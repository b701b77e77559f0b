"""The notebooks run top to bottom on small settings (nbclient, a real kernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("name", ["quickstart", "drift_and_retrain"])
def test_notebook_runs(name, tmp_path, tiny_model, monkeypatch):
    env = {
        "FORESIGHT_NB_WORK": str(tmp_path / "work"),
        "FORESIGHT_NB_MODEL": str(tiny_model),
        "FORESIGHT_NB_STEPS": "2",
        "FORESIGHT_NB_SIM_HOURS": str(20 / 3600),
        "FORESIGHT_NB_SAMPLES": str(ROOT / "data_samples"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "Error" not in outputs
    assert any(Path(env["FORESIGHT_NB_WORK"]).glob("*.png"))
