"""``foresight bench dashboard`` writes its section with a row per window it can cover."""

from __future__ import annotations

from foresight.dashboard.bench import bench_dashboard


def test_bench_dashboard_writes_its_section(tmp_path):
    out = tmp_path / "B.md"
    md = bench_dashboard(0.05, tmp_path / "work", out, progress=False)
    assert "<!-- bench:dashboard -->" in out.read_text()
    rows = [r for r in md.splitlines() if r.startswith("| 1 ")]
    assert [r.split("|")[1].strip() for r in rows] == ["1 h"]
    assert "43,200 points" in md and not (tmp_path / "work").exists()
