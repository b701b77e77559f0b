"""Shared pieces of the real-data benchmarks: data folders, JSON output, markdown tables."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foresight.errors import InputError


def default_data(name: str) -> str | None:
    """``../shared/data/<name>`` relative to the current directory, when it exists."""
    path = Path("..") / "shared" / "data" / name
    return str(path) if path.is_dir() else None


def data_dir(path: str | os.PathLike[str] | None, name: str) -> Path:
    """The benchmark folder, or an InputError naming what is missing."""
    if path is None:
        raise InputError(f"{name}: no --data given and ../shared/data/{name} does not exist")
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: {name} data folder not found")
    return p


def write_json(path: str | os.PathLike[str] | None, data: dict[str, Any]) -> None:
    """Write figures as JSON (NaN as null) when a path is given."""
    if path is None:
        return
    Path(path).write_text(json.dumps(_clean(data), indent=2) + "\n")


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats to 2 decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if not math.isfinite(v) else f"{v:.2f}"
        return str(v)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def add_bench_parser(bsub: Any, name: str, help_text: str, data_help: str, run: Any) -> Any:
    """Add ``foresight bench <name>`` with the options every real-data bench shares; ``run(args)``
    returns the markdown it wrote, which is printed. Returns the parser for extra options."""

    def cmd(args: Any) -> int:
        print(run(args))
        return 0

    p = bsub.add_parser(name, help=help_text)
    p.add_argument("--data", default=default_data(name), help=data_help)
    p.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    p.add_argument("--json", help="also write the figures here")
    p.set_defaults(func=cmd)
    return p
