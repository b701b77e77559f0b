"""``foresight retrain``: fine-tune from the current model on recent footage, gate, version.

Steps (each logged, with a progress bar on the CLI and ``report_progress`` for the dashboard):

1. **Footage.** The clips of the footage folder (the monitor's rolling archive, or ``--data``),
   oldest first. A clip whose time span overlaps an incident that operators marked
   (``feedback_labels``: ``jam_precursor`` or ``unknown``; ``false_alarm`` windows are normal
   footage) within ``retrain.exclude_margin_s`` is left out. A clip's start comes from a sidecar
   ``<stem>.json`` (``{"start_ns": ...}``) or a 19-digit ns timestamp in its name; clips with
   neither cannot be matched and are kept (the report counts them). The newest
   ``holdout_fraction`` of the clips is held out for the gate; the rest is hard-linked (or
   copied) into a work folder.
2. **Fine-tune and recalibrate**: ``fit(init=current)``, which calibrates on its own validation
   split.
3. **Gate** (``foresight.retrain.gate``). A passing candidate becomes the next version; a failing
   one is deleted and its report kept under ``rejected/``.
4. **Promotion** needs an operator (``foresight retrain --approve VERSION``, or the dashboard's
   model switch); it is automatic only when ``retrain.auto_promote`` is set *and* ``plc.dry_run``
   is on. Promotion and rollback replace the ``current`` link atomically and write the monitor's
   swap request file, so the running monitor hot-swaps between two frames.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from tqdm.auto import tqdm

from foresight.config import Config
from foresight.errors import InputError
from foresight.ingest.discover import find_videos
from foresight.monitor.config import archive_folder
from foresight.retrain.config import RetrainConfig
from foresight.retrain.gate import run_gate
from foresight.retrain.versions import Versions, atomic_write

log = logging.getLogger(__name__)
INCIDENT_LABELS = ("jam_precursor", "unknown")
_NS = re.compile(r"(\d{19})")


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain produced."""

    passed: bool
    version: str | None  # the new version (None when the gate failed)
    promoted: bool
    report: dict[str, Any]
    report_path: Path


def versions_of(cfg: Config, rcfg: RetrainConfig) -> Versions:
    """The version directory of ``cfg.line.name``."""
    return Versions(Path(rcfg.models_dir) / cfg.line.name)


def swap_request_path(cfg: Config) -> Path:
    """The file whose appearance makes the running monitor hot-swap its model."""
    given = getattr(cfg.monitor, "swap_request", None)
    return Path(given) if given else Path(cfg.monitor.health_file).with_name("swap.request")


def tell_monitor(cfg: Config, model_dir: Path) -> Path:
    """Ask the running monitor to swap to ``model_dir`` (atomic write of the request file)."""
    path = swap_request_path(cfg)
    atomic_write(path, str(Path(model_dir).resolve()) + "\n")
    return path


def clip_span(video: Path) -> tuple[int, int] | None:
    """(start_ns, end_ns) of a clip from its sidecar JSON or name, or None when unknown."""
    import json

    side = video.with_suffix(".json")
    start = None
    if side.is_file():
        try:
            start = int(json.loads(side.read_text())["start_ns"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{side}: needs an integer 'start_ns'") from None
    elif m := _NS.search(video.stem):
        start = int(m.group(1))
    if start is None:
        return None
    cap = cv2.VideoCapture(str(video))
    frames, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    seconds = frames / fps if fps and fps > 0 else 0.0
    return start, start + int(seconds * 1e9)


def select_footage(
    folder: Path, rcfg: RetrainConfig, incidents: list[int]
) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """(training clips, held-out clips, notes): incidents left out, clips that started more than
    ``rcfg.recent_hours`` ago left out, newest clips held out."""
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such footage folder")
    videos = [v.path for v in find_videos([Path(folder)])]
    spans = {v: clip_span(v) for v in videos}
    videos.sort(key=lambda v: (spans[v][0] if spans[v] else v.stat().st_mtime_ns, v.name))
    margin = int(rcfg.exclude_margin_s * 1e9)
    since = None
    if rcfg.recent_hours is not None:
        since = time.time_ns() - int(rcfg.recent_hours * 3600e9)
    kept, left_out, older = [], [], []
    for v in videos:
        s = spans[v]
        if since is not None and (s is None or s[0] < since):
            older.append(v.name)  # an untimed clip cannot be shown to be recent
        elif s is not None and any(s[0] - margin <= a <= s[1] + margin for a in incidents):
            left_out.append(v.name)
        else:
            kept.append(v)
    if len(kept) < 2:
        raise InputError(f"{folder}: need 2 usable clips (train + held out), got {len(kept)}")
    n_hold = min(len(kept) - 1, max(1, round(len(kept) * rcfg.holdout_fraction)))
    notes = {
        "clips": len(videos),
        "excluded_incidents": left_out,
        "older_than_recent_hours": len(older),
        "untimed_clips": sum(1 for v in videos if spans[v] is None),
    }
    return kept[:-n_hold], kept[-n_hold:], notes


def stage(clips: list[Path], into: Path) -> Path:
    """Hard-link (or copy) clips with their sensor CSVs and labels into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for v in clips:
        for f in (v, v.with_suffix(".csv")):
            if f.is_file() and not (into / f.name).exists():
                try:
                    os.link(f, into / f.name)
                except OSError:
                    shutil.copy2(f, into / f.name)
    return into


def incidents_from_store(cfg: Config) -> list[int]:
    """``alarm_ns`` of every alarm operators marked as an incident (empty without a store)."""
    from foresight.dashboard.feedback import feedback_labels
    from foresight.store import Store

    if not Path(cfg.store.path).is_file():
        return []
    store = Store.open(cfg.store, None, line=cfg.line.name, readonly=True)
    try:
        labels = feedback_labels(store, 0, 2**63 - 1)
    finally:
        store.close()
    return sorted(k for k, v in labels.items() if v in INCIDENT_LABELS)


def current_model(cfg: Config, rcfg: RetrainConfig, by: str) -> Path:
    """The current version's directory; adopts ``monitor.model`` (or the sample) as v0001."""
    vs = versions_of(cfg, rcfg)
    if vs.current is None:
        from foresight.dashboard.data import model_dir

        src = model_dir(cfg)
        log.info("no versions in %s yet: adopting %s as the first", vs.root, src)
        vs.adopt(src, by)
    return vs.path(vs.current)


class Progress:
    """One progress channel for the CLI bar and the dashboard request (either may be absent)."""

    def __init__(self, show: bool, requests_dir: Path | None = None, request=None):
        self.bar = tqdm(total=100, desc="retrain", unit="%", disable=not show)
        self.dir, self.req = requests_dir, request

    def __call__(self, frac: float, message: str) -> None:
        log.info("retrain: %s", message)
        self.bar.set_postfix_str(message[:40])
        self.bar.update(max(0, round(frac * 100) - self.bar.n))
        if self.req is not None and self.dir is not None:
            from foresight.dashboard.requests import report_progress

            self.req = report_progress(self.dir, self.req, frac, message)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()


def retrain(
    cfg: Config,
    rcfg: RetrainConfig,
    *,
    data: Path | None = None,
    by: str | None = None,
    progress: Progress | None = None,
    show: bool = True,
) -> RetrainResult:
    """Fine-tune, recalibrate and gate a candidate; version it; promote it only when allowed."""
    from foresight.model.fit import fit

    by = by or getpass.getuser()
    prog = progress or Progress(show)
    folder = data or (Path(rcfg.archive) if rcfg.archive else archive_folder(cfg.monitor))
    vs = versions_of(cfg, rcfg)
    current = current_model(cfg, rcfg, by)
    prog(0.02, f"current model {current.name}")
    train, hold, notes = select_footage(Path(folder), rcfg, incidents_from_store(cfg))
    work = vs.root / ".work" / f"retrain-{time.time_ns()}"
    try:
        stage(train, work / "train")
        stage(hold, work / "holdout")
        prog(0.05, f"{len(train)} clips to train on, {len(hold)} held out")
        tcfg = cfg.train.model_copy(
            update={"max_steps": rcfg.max_steps, "max_minutes": rcfg.max_minutes}
        )
        fit(tuning_config(cfg, current, tcfg), work / "train", work / "model",
            init=current, progress=show)  # fmt: skip
        prog(0.4, "fine-tuned and recalibrated; gating")
        regression = Path(rcfg.regression_dir) if rcfg.regression_dir else None
        report = run_gate(current, work / "model", [work / "holdout"], rcfg, cfg.alarms,
                          regression, progress=prog)  # fmt: skip
        report |= {"footage": notes, "trained_on": [p.name for p in train], "by": by}
        if not report["passed"]:
            path = vs.reject(work / "model", report)
            prog(1.0, f"candidate rejected: {report['summary']}")
            return RetrainResult(False, None, False, report, path)
        name = vs.add(work / "model", report)
        promoted = False
        if rcfg.auto_promote and cfg.plc.dry_run:
            promote(cfg, rcfg, name, by="auto (dry run)", reason="gate passed")
            promoted = True
        vs.prune(rcfg.keep_versions)
        what = "promoted" if promoted else "awaiting approval"
        prog(1.0, f"{name} passed the gate; {what}")
        return RetrainResult(True, name, promoted, report, vs.path(name) / "gate.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if progress is None:
            prog.close()


def tuning_config(cfg: Config, current: Path, tcfg) -> Config:
    """The fine-tuning configuration: the current model's own input geometry (sampling, channels
    and camera crop, from its card: a fine-tune must see what the model was built for) with
    ``tcfg`` as the training budget."""
    from foresight.ingest.config import DataConfig
    from foresight.model.checkpoint import read_card

    trained = read_card(current).get("config", {})
    update: dict[str, Any] = {"train": tcfg}
    if "data" in trained:
        update["data"] = DataConfig(**trained["data"])
    roi = (trained.get("ingest") or {}).get("roi")
    update["ingest"] = cfg.ingest.model_copy(update={"roi": tuple(roi) if roi else None})
    return cfg.model_copy(update=update)


def promote(cfg: Config, rcfg: RetrainConfig, version: str, by: str, reason: str = "") -> Path:
    """Approve ``version``: point ``current`` at it and tell the monitor."""
    vs = versions_of(cfg, rcfg)
    name = vs.promote(version, by, reason)
    tell_monitor(cfg, vs.path(name))
    log.info("%s promoted by %s", name, by)
    return vs.path(name)


def rollback(
    cfg: Config, rcfg: RetrainConfig, by: str, to: str | None = None, reason: str = ""
) -> Path:
    """Go back to the previous version (or ``to``) and tell the monitor."""
    vs = versions_of(cfg, rcfg)
    name = vs.rollback(by, reason, to)
    tell_monitor(cfg, vs.path(name))
    log.info("rolled back to %s by %s", name, by)
    return vs.path(name)


def serve_requests(cfg: Config, rcfg: RetrainConfig, requests_dir: Path, show: bool = True) -> int:
    """Take pending ``retrain`` and ``rollback`` requests (dashboard) and carry them out.

    A rollback request names a model directory; pointing at a newer version that passed its gate
    is how an operator approves a promotion from the dashboard. Returns requests handled.
    """
    from foresight.dashboard import requests as rq

    handled = 0
    for req in rq.take(requests_dir, ("retrain", "rollback")):
        who = f"{req.operator} (dashboard)"
        try:
            if req.kind == "retrain":
                rc = rcfg
                if req.params.get("since_ns"):  # after a drift: the footage since it
                    hours = max(time.time_ns() - int(req.params["since_ns"]), 1) / 3.6e12
                    rc = rcfg.model_copy(update={"recent_hours": hours})
                res = retrain(cfg, rc, by=who, show=show,
                              progress=Progress(show, requests_dir, req))  # fmt: skip
                msg = res.report["summary"] + (f" -> {res.version}" if res.version else "")
                rq.finish(requests_dir, req, res.passed, msg)
            else:
                target = Path(str(req.params.get("model", ""))).name
                vs = versions_of(cfg, rcfg)
                newer = vs.current is not None and target > vs.current
                act = promote if newer else rollback
                kw = {"version": target} if newer else {"to": target}
                path = act(cfg, rcfg, by=who, reason=req.reason, **kw)
                rq.finish(requests_dir, req, True, f"current is now {path.name}")
        except InputError as e:
            rq.finish(requests_dir, req, False, str(e))
        handled += 1
    return handled
