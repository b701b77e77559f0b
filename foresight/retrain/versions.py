"""Versioned model directories with an atomic ``current`` pointer, approval and rollback.

Layout of ``<retrain.models_dir>/<line>/``::

    v0001/ v0002/ ...      model directories (orbax weights + model.json) plus gate.json
    current -> v0002       a relative symlink, replaced atomically (temp link + rename)
    history.jsonl          one line per promotion or rollback (who, when, why, from, to)
    rejected/<name>.json   gate reports of candidates that failed (their weights are deleted)

Design: the monitor points ``monitor.model`` at ``.../current`` (read on start) and is told of
a change through its swap request file (``monitor.swap_request``, default ``swap.request``
beside ``monitor.health_file``), which holds the new version's directory. A version enters the
directory only after its gate ran (a rename from the work area, so never half-written) and
becomes current only by ``promote``: operator approval, or automatically when the config allows
it in dry-run mode. The previous version stays for rollback; ``prune`` never removes the current
or the previous one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from foresight.errors import InputError

CURRENT = "current"
HISTORY = "history.jsonl"
GATE = "gate.json"
_NAME = re.compile(r"^v(\d{4,})$")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Versions:
    """The versions of one line's model."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def names(self) -> list[str]:
        """Version names, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda n: int(n[1:]))

    def path(self, name: str) -> Path:
        """The directory of version ``name`` (``InputError`` when there is none)."""
        name = Path(str(name)).name  # accept a path to the version too
        p = self.root / name
        if not _NAME.match(name) or not p.is_dir():
            known = ", ".join(self.names()) or "none"
            raise InputError(f"{self.root}: no model version {name!r} (known: {known})")
        return p

    def next_name(self) -> str:
        """The name the next version gets."""
        names = self.names()
        return f"v{(int(names[-1][1:]) + 1 if names else 1):04d}"

    @property
    def current(self) -> str | None:
        """The version ``current`` points at, or None."""
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        name = Path(os.readlink(link)).name
        return name if (self.root / name).is_dir() else None

    def gate(self, name: str) -> dict[str, Any]:
        """The gate report of a version ({} for an adopted first version)."""
        f = self.path(name) / GATE
        return json.loads(f.read_text()) if f.is_file() else {}

    def history(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first."""
        f = self.root / HISTORY
        if not f.is_file():
            return []
        return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]

    def add(self, model_dir: Path, report: dict[str, Any] | None = None) -> str:
        """Move a finished model directory in as the next version (with its gate report)."""
        name = self.next_name()
        self.root.mkdir(parents=True, exist_ok=True)
        if report is not None:
            atomic_write(Path(model_dir) / GATE, json.dumps(report, indent=1) + "\n")
        os.replace(model_dir, self.root / name)
        return name

    def adopt(self, model_dir: Path, by: str) -> str:
        """Copy an existing model in as the first version and make it current."""
        tmp = self.root / f".adopt-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp, ignore=shutil.ignore_patterns(GATE))
        name = self.add(tmp)
        self._point(name, by, f"adopted {model_dir}", "adopt")
        return name

    def promote(self, name: str, by: str, reason: str = "") -> str:
        """Make a version that passed its gate current (operator approval)."""
        name = self.path(name).name
        rep = self.gate(name)
        if rep and not rep.get("passed"):
            raise InputError(f"{name}: its gate failed ({rep.get('summary', '?')}); not promoted")
        self._point(name, by, reason, "promote")
        return name

    def previous(self) -> str | None:
        """The version that was current before the current one (for rollback)."""
        cur = self.current
        for h in reversed(self.history()):
            if h.get("to") == cur and h.get("from") and (self.root / h["from"]).is_dir():
                return h["from"]
        return None

    def rollback(self, by: str, reason: str = "", to: str | None = None) -> str:
        """Point ``current`` back at the previous version (or at ``to``)."""
        target = to or self.previous()
        if target is None:
            raise InputError(f"{self.root}: no previous version to roll back to")
        self._point(self.path(target).name, by, reason, "rollback")
        return Path(target).name

    def _point(self, name: str, by: str, reason: str, action: str) -> None:
        """Replace the ``current`` link atomically and log the change."""
        old = self.current
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(name, tmp)
        os.replace(tmp, self.root / CURRENT)
        entry = {"time_ns": time.time_ns(), "action": action, "from": old, "to": name}
        entry |= {"by": by, "reason": reason}
        with (self.root / HISTORY).open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def reject(self, model_dir: Path, report: dict[str, Any]) -> Path:
        """Keep a failed candidate's gate report and delete its weights."""
        out = self.root / "rejected" / f"candidate-{time.time_ns()}.json"
        atomic_write(out, json.dumps(report, indent=1) + "\n")
        shutil.rmtree(model_dir, ignore_errors=True)
        return out

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep`` (never the current or the previous)."""
        names, protect = self.names(), {self.current, self.previous()}
        gone = []
        for n in names[: max(0, len(names) - keep)]:
            if n not in protect:
                shutil.rmtree(self.root / n, ignore_errors=True)
                gone.append(n)
        return gone
