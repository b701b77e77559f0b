"""``run_ingest``: find the recordings, skip finished ones, ingest the rest (in a process pool).

Each source is the unit of work and of parallelism. The main process alone writes the manifest,
after every completed or failed source; workers write only their own ``.partial`` directory and
report progress (output frames) through a queue that feeds one tqdm bar.

Memory bound. Peak memory does not depend on the length of the footage. Per worker process:
the interpreter with NumPy, OpenCV and pydantic (about 70 MB resident), FFmpeg's decoder state
(a few reference frames per decoder thread, each ``src_width * src_height * 1.5`` bytes), one
decoded BGR source frame (``src_width * src_height * 3``), one output chunk of
``ingest.chunk_frames * image_size**2 * 3`` bytes (0.8 MB at the defaults) plus two output-sized
scratch frames, the CSV reader's current and previous rows and a 4096-row float32 sensor buffer,
and 1 MiB for hashing. The main process adds only the manifest (about 0.6 kB per source) and the
list of inputs. Measured (``tests/test_ingest_resume.py``): a 40 s recording peaks within 2 MB of
a 4 s one whose output is 10x smaller (the test allows 30 MB); 720p ``mp4v`` peaks near 100 MB.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from foresight.errors import InputError
from foresight.ingest.config import DataConfig, IngestConfig
from foresight.ingest.discover import FoundVideo, Survey, copy_labels, find_videos, survey
from foresight.ingest.layout import (
    MANIFEST,
    clean_stale,
    exclusive,
    open_manifest,
    sort_records,
    write_json_atomic,
)
from foresight.ingest.source import SourceTask, ingest_source

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_progress_queue: Any = None  # set in each pool worker by _init_worker
_parent_pid = 0


@dataclass
class IngestReport:
    """Outcome of one ingest run: sources ingested, skipped (already done) and failed."""

    out: Path
    ok: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    frames: int = 0
    windows: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """One line per failure, then a one-line summary."""
        lines = [f"failed: {message}" for _, message in self.failed]
        lines.append(
            f"ingest into {self.out}: {len(self.ok)} ingested ({self.frames} frames, "
            f"{self.windows} windows), {len(self.skipped)} skipped (already done), "
            f"{len(self.failed)} failed, {self.seconds:.1f} s"
        )
        return "\n".join(lines)


@dataclass
class _Run:
    out: Path
    data: DataConfig
    ingest: IngestConfig
    manifest: dict[str, Any]
    report: IngestReport

    def fail(self, path: Path, message: str) -> None:
        message = " ".join(message.split())  # always one line
        log.error("%s", message)
        self.report.failed.append((path, message))
        failures = [f for f in self.manifest["failures"] if f["path"] != str(path)]
        self.manifest["failures"] = [*failures, {"path": str(path), "error": message}]
        self.save()

    def succeed(self, path: Path, record: dict[str, Any]) -> None:
        self.report.ok.append(path)
        self.report.frames += record["frames"]
        self.report.windows += record["windows"]
        self.manifest["sources"].append(record)
        failures = self.manifest["failures"]
        self.manifest["failures"] = [f for f in failures if f["path"] != str(path)]
        self.save()

    def save(self) -> None:
        sort_records(self.manifest)
        write_json_atomic(self.out / MANIFEST, self.manifest)


def run_ingest(
    inputs: list[Path],
    out: Path,
    data: DataConfig,
    ingest: IngestConfig,
    progress: bool = True,
) -> IngestReport:
    """Ingest videos (files, or directories searched recursively) into the shard dir ``out``."""
    start = time.perf_counter()
    videos = find_videos([Path(p) for p in inputs])
    if ingest.roi == "auto":
        from foresight.ingest.roi import auto_roi, manifest_roi

        roi = manifest_roi(Path(out))  # more footage for the same shards keeps their crop
        if roi == "unknown":
            roi = auto_roi([v.path for v in videos])
        log.info("ROI (x, y, w, h): %s", "whole frame" if roi is None else roi)
        ingest = ingest.model_copy(update={"roi": roi})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        report = _run_locked(videos, out, data, ingest, progress)
    report.seconds = time.perf_counter() - start
    return report


def _run_locked(
    videos: list[FoundVideo], out: Path, data: DataConfig, ingest: IngestConfig, progress: bool
) -> IngestReport:
    manifest = open_manifest(out, data)
    clean_stale(out, manifest)
    run = _Run(out, data, ingest, manifest, IngestReport(out=out))
    run.save()
    with _pool(ingest.workers if len(videos) > 1 else 1) as (pool, queue):
        paths = [v.path for v in videos]
        log.info("fingerprinting %d video(s)", len(paths))
        if pool is None:
            surveys = [survey(p, data.fps) for p in paths]
        else:
            surveys = list(pool.map(survey, paths, repeat(data.fps)))
        tasks, estimates = _plan(run, videos, surveys)
        bar = tqdm(total=sum(estimates), unit="frame", desc="ingest", disable=not progress)
        redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
        with bar, redirect:
            if pool is None or len(tasks) < 2:
                _run_inline(run, tasks, estimates, bar)
            else:
                _run_pool(run, pool, queue, tasks, estimates, bar)
    return run.report


def _plan(
    run: _Run, videos: list[FoundVideo], surveys: list[Survey]
) -> tuple[list[SourceTask], list[int]]:
    done = {s["sha256"]: s["path"] for s in run.manifest["sources"]}
    tasks: list[SourceTask] = []
    estimates: list[int] = []
    copied: dict[Path, str] = {}
    for video, found in zip(videos, surveys, strict=True):
        if not found.sha256:
            run.fail(video.path, f"{video.path}: cannot read the file")
        elif found.sha256 in done:
            log.info("%s: already ingested (as %s), skipped", video.path, done[found.sha256])
            run.report.skipped.append(video.path)
        else:
            done[found.sha256] = str(video.path)
            labels = None
            if video.labels is not None:
                if video.labels not in copied:
                    copied[video.labels] = copy_labels(video.labels, run.out)
                labels = copied[video.labels]
            tasks.append(
                SourceTask(len(tasks), video.path, video.csv, found.sha256, found.bytes, labels)
            )
            estimates.append(found.estimate)
    return tasks, estimates


def _finish(run: _Run, task: SourceTask, outcome: tuple[dict[str, Any] | None, str]) -> None:
    record, error = outcome
    if record is None:
        run.fail(task.path, error)
    else:
        run.succeed(task.path, record)
        log.debug("%s: %d frames, %d windows", task.path, record["frames"], record["windows"])


def run_task(
    task: SourceTask,
    out: Path,
    data: DataConfig,
    ingest: IngestConfig,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Ingest one source; returns (record, "") or (None, one-line error) instead of raising."""
    try:
        return ingest_source(task, out, data, ingest, on_progress), ""
    except InputError as e:
        return None, str(e)
    except Exception as e:  # keep going: one bad file must not stop weeks of footage
        log.debug("%s: unexpected error", task.path, exc_info=True)
        return None, f"{task.path}: unexpected {type(e).__name__}: {e}"


def _run_inline(run: _Run, tasks: list[SourceTask], estimates: list[int], bar: tqdm) -> None:
    for task, estimate in zip(tasks, estimates, strict=True):
        done_before = bar.n
        outcome = run_task(task, run.out, run.data, run.ingest, bar.update)
        _settle(bar, estimate, bar.n - done_before, outcome)
        _finish(run, task, outcome)


def _settle(bar: tqdm, estimate: int, reported: int, outcome: tuple[Any, str]) -> None:
    """Replace a finished source's estimate in the bar's total by what it really produced."""
    record = outcome[0]
    actual = record["frames"] if record is not None else reported
    bar.total = max(bar.n, bar.total + actual - estimate)
    bar.refresh()


def _run_pool(
    run: _Run,
    pool: ProcessPoolExecutor,
    queue: Any,
    tasks: list[SourceTask],
    estimates: list[int],
    bar: tqdm,
) -> None:
    reported = [0] * len(tasks)
    pending: dict[Future, SourceTask] = {
        pool.submit(_pool_task, t, run.out, run.data, run.ingest): t for t in tasks
    }
    while pending:
        done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
        _drain(queue, bar, reported)
        for fut in done:
            task = pending.pop(fut)
            try:
                outcome = fut.result()
            except Exception as e:  # a worker died (e.g. a decoder crash)
                outcome = (None, f"{task.path}: worker process failed: {type(e).__name__}: {e}")
            _settle(bar, estimates[task.index], reported[task.index], outcome)
            _finish(run, task, outcome)
    _drain(queue, bar, reported)


def _drain(queue: Any, bar: tqdm, reported: list[int]) -> None:
    while True:
        try:
            index, n = queue.get_nowait()
        except queue_mod.Empty:
            return
        reported[index] += n
        bar.update(n)


def _pool_task(
    task: SourceTask, out: Path, data: DataConfig, ingest: IngestConfig
) -> tuple[dict[str, Any] | None, str]:
    def report(n: int) -> None:
        if os.getppid() != _parent_pid:  # the ingest was killed: stop, removing the partial
            raise SystemExit(1)
        _progress_queue.put((task.index, n))

    return run_task(task, out, data, ingest, report)


def _init_worker(queue: Any, level: int, parent: int) -> None:
    global _progress_queue, _parent_pid
    _progress_queue, _parent_pid = queue, parent
    logging.basicConfig(level=level, format=LOG_FORMAT)


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[tuple[ProcessPoolExecutor | None, Any]]:
    """A spawn-context process pool with a progress queue, or (None, None) for one worker."""
    if workers <= 1:
        yield None, None
        return
    ctx = mp.get_context("spawn")  # no fork after OpenCV/FFmpeg threads exist
    queue = ctx.Queue()
    level = logging.getLogger().getEffectiveLevel()
    args = (queue, level, os.getpid())
    pool = ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=args)
    try:
        yield pool, queue
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()
