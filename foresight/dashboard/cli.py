"""``foresight dashboard``: start the Streamlit app on the configured (loopback) address."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import foresight
from foresight.errors import InputError

APP = Path(foresight.__file__).resolve().parents[1] / "dashboards" / "Foresight.py"


def streamlit_command(host: str, port: int, app: Path = APP) -> list[str]:
    """The ``streamlit run`` command line (headless, no usage statistics, no reloading)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def dashboard_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment that hands the config to the pages (``ui.ENV``)."""
    from foresight.dashboard.ui import ENV

    path = str(Path(args.config).resolve()) if args.config else None
    doc = {"path": path, "preset": args.preset, "overrides": list(args.overrides)}
    return {**os.environ, ENV: json.dumps(doc)}


def _hash_password() -> int:
    from foresight.dashboard.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            raise InputError("the passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        raise InputError("use a password of at least 8 characters")
    print(hash_password(pw))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Validate the config, then run streamlit until it stops."""
    if args.hash_password:
        return _hash_password()
    from foresight.dashboard.config import load_settings

    cfg, dcfg = load_settings(args.config, args.preset, args.overrides)
    host = args.host or dcfg.host
    port = args.port or dcfg.port
    if not APP.is_file():
        raise InputError(f"{APP}: dashboard app not found (run from a source checkout)")
    print(f"dashboard on http://{host}:{port} (store {cfg.store.path})", flush=True)
    try:
        return subprocess.call(streamlit_command(host, port), env=dashboard_env(args))
    except KeyboardInterrupt:
        return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``dashboard`` subcommand to the ``foresight`` parser."""
    from foresight.cli import _add_config_args

    p = sub.add_parser("dashboard", help="the operators' dashboard (Streamlit, 127.0.0.1)")
    _add_config_args(p)
    p.add_argument("--host", help="listen address (default dashboard.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default dashboard.port, 8501)")
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="print a password hash for [dashboard] users and exit",
    )
    p.set_defaults(func=cmd_dashboard)
