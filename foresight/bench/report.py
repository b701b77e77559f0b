"""Write one benchmark's section into BENCHMARKS.md, keeping the others.

Each section is delimited by ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` and records the
command that produced it, the machine and the date, so every figure can be reproduced.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

HEADER = (
    "# Foresight benchmarks\n\n"
    "Every section below is written by the command it names; rerun that command to reproduce it.\n"
    "Figures are measured, misses included. Sections are replaced, never edited by hand.\n"
)


def machine_description() -> str:
    """CPU model, core count, memory and accelerators of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores{mem}, Python {platform.python_version()}, {platform.system()}"


def command_line() -> str:
    """The command that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("foresight"):
        argv[0] = "foresight"
    return shlex.join(argv)


def section(title: str, body: str, *, command: str | None = None, device: str | None = None) -> str:
    """Markdown for one section with its provenance lines."""
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## {title}\n\n"
        f"- command: `{command or command_line()}`\n"
        f"- machine: {device or machine_description()}\n"
        f"- date: {when}\n\n"
        f"{body.rstrip()}\n"
    )


def write_section(path: str | os.PathLike[str], name: str, markdown: str) -> None:
    """Replace (or append) section ``name`` in ``path`` atomically."""
    path = Path(path)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=".bench-", suffix=".md")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
