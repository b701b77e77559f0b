"""``foresight retrain`` and ``foresight drift``: thin subcommands over the library calls."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path


def _settings(args: argparse.Namespace):
    """The configuration plus the ``[retrain]`` and ``[drift]`` tables (defaults when absent)."""
    from foresight.cli import _config
    from foresight.drift.config import DriftConfig
    from foresight.retrain.config import RetrainConfig

    cfg = _config(args)
    rcfg = getattr(cfg, "retrain", None) or RetrainConfig()
    dcfg = getattr(cfg, "drift", None) or DriftConfig()
    if getattr(args, "models_dir", None):
        rcfg = rcfg.model_copy(update={"models_dir": args.models_dir})
    if getattr(args, "max_steps", None):
        rcfg = rcfg.model_copy(update={"max_steps": args.max_steps})
    if getattr(args, "recent_hours", None):
        rcfg = rcfg.model_copy(update={"recent_hours": args.recent_hours})
    for key in ("sample_seconds", "min_samples"):
        if getattr(args, key, None):
            dcfg = dcfg.model_copy(update={key: getattr(args, key)})
    if getattr(args, "regression", None):
        rcfg = rcfg.model_copy(update={"regression_dir": args.regression})
    return cfg, rcfg, dcfg


def cmd_retrain(args: argparse.Namespace) -> int:
    """Retrain, approve, roll back, list versions or serve dashboard requests."""
    from foresight.retrain import run

    cfg, rcfg, _ = _settings(args)
    who = getpass.getuser()
    if args.approve:
        print(f"current is now {run.promote(cfg, rcfg, args.approve, by=who, reason=args.reason)}")
        return 0
    if args.rollback:
        print(f"current is now {run.rollback(cfg, rcfg, by=who, reason=args.reason)}")
        return 0
    if args.list:
        vs = run.versions_of(cfg, rcfg)
        for n in vs.names():
            mark = "*" if n == vs.current else " "
            print(f"{mark} {n}  gate: {vs.gate(n).get('summary', 'adopted')}")
        return 0
    if args.requests:
        n = run.serve_requests(cfg, rcfg, Path(args.requests), show=not args.quiet)
        print(f"handled {n} request{'s' * (n != 1)}")
        return 0
    res = run.retrain(cfg, rcfg, data=Path(args.data) if args.data else None, by=who,
                      show=not args.quiet)  # fmt: skip
    state = "promoted" if res.promoted else "awaiting `foresight retrain --approve VERSION`"
    print(f"gate {res.report['summary']}; report {res.report_path}")
    if res.version:
        print(f"new version {res.version}: {state}")
    return 0 if res.passed else 1


def cmd_drift(args: argparse.Namespace) -> int:
    """Scan simulated footage for drift with a model (a check of the detector settings)."""
    from foresight.drift.run import drift_run

    cfg, _, dcfg = _settings(args)
    sim = cfg.sim.model_copy(
        update={
            "bearing_wear_per_hour": args.wear,
            "lighting_change_at": args.lighting_at,
            "supplier_change_at": args.supplier_at,
        }
    )
    res = drift_run(Path(args.model), sim, dcfg, minutes=args.minutes, progress=not args.quiet)
    for ev in res.events:
        print(json.dumps(ev.to_dict()))
    if not res.events:
        print(f"no drift in {res.seconds / 60:.1f} min ({len(res.samples)} detector samples)")
    return 0


def cmd_bench_drift(args: argparse.Namespace) -> int:
    """False-drift rate on long normal runs into BENCHMARKS.md."""
    from foresight.drift.bench import bench_drift

    cfg, _, dcfg = _settings(args)
    print(bench_drift(cfg, dcfg, Path(args.model), Path(args.benchmarks), hours=args.hours,
                      runs=args.runs))  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``retrain`` and ``drift`` to the ``foresight`` parser."""
    from foresight.cli import _add_config_args

    p = sub.add_parser("retrain", help="fine-tune on recent footage, gate, version, promote")
    _add_config_args(p)
    p.add_argument("--data", help="footage folder (default retrain.archive)")
    p.add_argument("--models-dir", help="override retrain.models_dir")
    p.add_argument("--max-steps", type=int, help="override retrain.max_steps")
    p.add_argument(
        "--recent-hours", type=float, help="only the archive's last H hours (retrain.recent_hours)"
    )
    p.add_argument("--regression", help="labelled incident clips (override retrain.regression_dir)")
    p.add_argument("--approve", metavar="VERSION", help="promote a version that passed its gate")
    p.add_argument("--rollback", action="store_true", help="go back to the previous version")
    p.add_argument("--list", action="store_true", help="list versions (* = current)")
    p.add_argument("--requests", metavar="DIR", help="carry out the dashboard's pending requests")
    p.add_argument("--reason", default="", help="why (kept in history.jsonl)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("drift", help="scan the simulated line for drift with a model")
    _add_config_args(p)
    p.add_argument("--model", required=True, help="calibrated model directory")
    p.add_argument("--minutes", type=float, default=30.0, help="simulated minutes")
    p.add_argument("--wear", type=float, default=0.0, help="bearing wear, mm/s per hour")
    p.add_argument("--lighting-at", type=float, help="lighting change at this second")
    p.add_argument("--supplier-at", type=float, help="new carton supplier at this second")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_drift)


def register_bench(bsub: argparse._SubParsersAction) -> None:
    """Add ``bench drift`` to the ``foresight bench`` sub-parsers."""
    from foresight.cli import _add_config_args

    pb = bsub.add_parser("drift", help="false-drift rate on long normal simulated runs")
    _add_config_args(pb)
    pb.add_argument("--model", required=True, help="calibrated model directory")
    pb.add_argument("--hours", type=float, default=2.0, help="hours per run")
    pb.add_argument("--runs", type=int, default=3, help="seeded runs")
    pb.add_argument("--sample-seconds", type=float, help="override drift.sample_seconds")
    pb.add_argument("--min-samples", type=int, help="override drift.min_samples")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_drift)
