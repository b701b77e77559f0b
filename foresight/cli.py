"""The ``foresight`` console script: thin subcommands that call library functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from foresight.errors import ConfigError, ForesightError

log = logging.getLogger("foresight")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="TOML", help="line configuration file")
    p.add_argument("--preset", help="named preset (default, tiny, ...)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set sim.fps=30 (repeatable)",
    )


def _config(args: argparse.Namespace):
    from foresight.config import load_config

    return load_config(args.config, preset=args.preset, overrides=args.overrides)


def cmd_config_show(args: argparse.Namespace) -> int:
    from foresight.config import to_toml

    sys.stdout.write(to_toml(_config(args)))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from foresight.sim.generate import simulate_to_dir

    cfg = _config(args)
    sim = cfg.sim if args.seed is None else cfg.sim.model_copy(update={"seed": args.seed})
    summary = simulate_to_dir(sim, Path(args.out), hours=args.hours, progress=not args.quiet)
    print(summary.describe())
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from foresight.ingest import run_ingest

    cfg = _config(args)
    ingest = cfg.ingest
    if args.workers is not None:
        ingest = ingest.model_copy(update={"workers": args.workers})
    if args.roi is not None:
        ingest = ingest.model_copy(update={"roi": tuple(args.roi)})
    report = run_ingest(
        [Path(p) for p in args.inputs], Path(args.out), cfg.data, ingest, progress=not args.quiet
    )
    print(report.describe())
    return 0 if not report.failed or args.allow_failures else 1


def cmd_train(args: argparse.Namespace) -> int:
    from foresight.model.fit import fit

    cfg = _config(args)
    updates = {}
    if args.max_minutes is not None:
        updates["max_minutes"] = args.max_minutes
    if args.max_steps is not None:
        updates["max_steps"] = args.max_steps
    if updates:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=updates)})
    res = fit(
        cfg,
        Path(args.data) if args.data else None,
        Path(args.out),
        init=Path(args.init) if args.init else None,
        sim=args.sim or args.lines > 1,
        lines=args.lines,
        progress=not args.quiet,
    )
    print(_describe_train(res))
    return 0


def _describe_train(res) -> str:
    lines = [
        f"model written to {res.path} after {res.steps} steps ({res.stopped}), "
        f"{res.frames_per_s:.0f} frames/s"
    ]
    v = res.val
    for i, (m, c) in enumerate(zip(v["frame_model"], v["frame_copy_last"], strict=True)):
        row = f"  horizon {i}: frame MSE {m:.5f} vs copy-last {c:.5f}"
        if "sensor_model" in v:
            row += f"; sensor MSE {v['sensor_model'][i]:.4f} vs linear {v['sensor_linear'][i]:.4f}"
        lines.append(row)
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from foresight.demo import run_demo, run_live_demo

    cfg = _config(args)
    if args.offline:
        minutes = args.minutes or 6.0
        print(run_demo(cfg, Path(args.out), minutes, args.train_minutes, progress=not args.quiet))
        return 0
    if args.model:
        cfg = cfg.model_copy(
            update={"monitor": cfg.monitor.model_copy(update={"model": args.model})}
        )
    from foresight.dashboard.cli import dashboard_env

    summary = run_live_demo(
        cfg,
        minutes=args.minutes,
        fault_every=args.fault_every,
        dashboard=not args.no_dashboard,
        env=dashboard_env(args),
    )
    print(summary)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from foresight.model.fit import calibrate_on_footage, recalibrate

    cfg, quiet = _config(args), args.quiet
    if args.footage:
        summary = calibrate_on_footage(cfg, Path(args.model), [Path(args.data)], progress=not quiet)
    else:
        summary = recalibrate(cfg, Path(args.model), Path(args.data), progress=not quiet)
    thr = summary["thresholds"]
    print(
        f"{args.model}: calibrated on {summary['footage']['scored_seconds']:.0f} s of held-out "
        f"normal footage; alarm level {thr['alarm']:.2f} (clear {thr['clear']:.2f}, "
        f"watch {thr['watch']:.2f}, normal median {thr['baseline']:.2f})"
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from foresight.replay import replay

    summary = replay(
        Path(args.model),
        Path(args.video) if args.video else None,
        Path(args.out),
        sensors=Path(args.sensors) if args.sensors else None,
        progress=not args.quiet,
    )
    print(summary.describe())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from foresight.evaluate.run import evaluate

    res = evaluate(
        Path(args.model),
        [Path(d) for d in args.data],
        [Path(d) for d in args.fit],
        Path(args.out),
        benchmarks=Path(args.benchmarks) if args.benchmarks else None,
        progress=not args.quiet,
    )
    print(res["markdown"])
    return 0


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from foresight.bench.detect import bench_detect

    print(
        bench_detect(
            _config(args),
            Path(args.benchmarks),
            Path(args.workdir),
            normal_minutes=args.normal_minutes,
            budget=args.budget,
            eval_hours=args.eval_hours,
            faults_per_hour=args.faults_per_hour,
            appearance_seed=args.appearance_seed,
            init=Path(args.init) if args.init else None,
            model=Path(args.model) if args.model else None,
            calib_minutes=args.calib_minutes,
            progress=not args.quiet,
        )
    )
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    import asyncio

    from foresight.monitor.app import describe, run_monitor

    print(describe(asyncio.run(run_monitor(_config(args)))))
    return 0


def cmd_plc_sim(args: argparse.Namespace) -> int:
    from foresight.plc.sim_server import run_plc_sim

    cfg = _config(args)
    line = None
    if args.line:
        from foresight.sim.line import LineSim

        line = LineSim(cfg.sim, seed=cfg.sim.seed)
    run_plc_sim(cfg.plc, args.host, args.port, line)
    return 0


def cmd_bench_dashboard(args: argparse.Namespace) -> int:
    from foresight.dashboard.bench import bench_dashboard

    if not args.days > 0:
        raise ConfigError(f"--days: must be greater than 0 (got {args.days})")
    md = bench_dashboard(args.days, Path(args.workdir), Path(args.benchmarks), not args.quiet)
    print(md)
    return 0


def cmd_bench_sim(args: argparse.Namespace) -> int:
    from foresight.bench.sim import bench_sim

    print(bench_sim(_config(args), seconds=args.seconds, out=Path(args.benchmarks)))
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from foresight.bench.ingest import bench_ingest

    print(bench_ingest(_config(args), minutes=args.minutes, out=Path(args.benchmarks)))
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from foresight.bench.model import bench_model

    model = Path(args.model) if args.model else None
    print(
        bench_model(
            _config(args),
            Path(args.benchmarks),
            model=model,
            frames=args.frames,
            memory=args.memory,
        )
    )
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from foresight.bench.quality import bench_quality

    print(
        bench_quality(
            _config(args),
            Path(args.benchmarks),
            minutes=args.minutes,
            train_steps=args.train_steps,
            base=Path(args.base) if args.base else None,
            base_steps=args.base_steps,
            lines=args.lines,
            workdir=Path(args.workdir) if args.workdir else None,
            samples=Path(args.samples) if args.samples else None,
            samples_minutes=args.samples_minutes,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``foresight`` command."""
    from foresight import __version__

    parser = argparse.ArgumentParser(
        prog="foresight", description="World-model monitor that slows a line before it jams."
    )
    parser.add_argument("--version", action="version", version=f"foresight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    ps = csub.add_parser("show", help="print the effective configuration (secrets masked)")
    _add_config_args(ps)
    ps.set_defaults(func=cmd_config_show)

    p = sub.add_parser("demo", help="the main job on embedded defaults (no PLC, DB or camera)")
    _add_config_args(p)
    p.add_argument("--minutes", type=float, help="stop after this many minutes (default: Ctrl-C)")
    p.add_argument("--model", help="model to watch the line with (default data_samples/model)")
    p.add_argument(
        "--fault-every",
        type=float,
        default=60.0,
        help="start a fault every N s of line time (0: none)",
    )
    p.add_argument("--no-dashboard", action="store_true", help="the monitor only")
    p.add_argument(
        "--offline",
        action="store_true",
        help="instead: simulate, ingest and train for a few minutes, print prediction quality",
    )
    p.add_argument("--out", default="runs/demo", help="--offline: working directory")
    p.add_argument("--train-minutes", type=float, default=3.0, help="--offline: training budget")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="render simulated line footage with labels")
    _add_config_args(p)
    p.add_argument("--hours", type=float, default=0.1, help="hours of footage (default 0.1)")
    p.add_argument("--out", default="runs/sim", help="output directory")
    p.add_argument("--seed", type=int, help="override sim.seed")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("ingest", help="turn recordings into training shards")
    _add_config_args(p)
    p.add_argument("inputs", nargs="+", help="video files or directories of them")
    p.add_argument("--out", default="runs/shards", help="shard directory (resumable)")
    p.add_argument("--workers", type=int, help="parallel worker processes")
    p.add_argument("--roi", type=int, nargs=4, metavar=("X", "Y", "W", "H"), help="crop")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even if files failed")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    for name, hlp in (
        ("train", "train or fine-tune a world model"),
        ("pretrain", "train a base model over many simulated lines"),
    ):
        p = sub.add_parser(name, help=hlp)
        _add_config_args(p)
        p.add_argument("--out", required=True, help="model directory to write")
        p.add_argument("--init", help="fine-tune from this model directory")
        p.add_argument("--max-minutes", type=float, help="wall-clock budget")
        p.add_argument("--max-steps", type=int, help="override train.max_steps")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        if name == "train":
            p.add_argument("--data", help="raw footage dir, ingest dir or manifest.json")
            p.add_argument("--sim", action="store_true", help="stream the simulated line")
            p.set_defaults(lines=1)
        else:
            p.add_argument("--lines", type=int, default=16, help="simulated line variants")
            p.set_defaults(data=None, sim=True)
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="recalibrate a model's residuals and alarm thresholds")
    _add_config_args(p)
    p.add_argument("--model", required=True, help="model directory (updated in place, atomically)")
    p.add_argument(
        "--data",
        required=True,
        help="the footage it was trained on (its held-out split is used), or with --footage "
        "normal footage it never trained on",
    )
    p.add_argument(
        "--footage",
        action="store_true",
        help="--data is normal footage recorded apart from the training footage: calibrate on "
        "all of it (longer calibration, better-founded thresholds)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("replay", help="run the monitor's pipeline over a recording (offline)")
    p.add_argument("video", nargs="?", help="video file (a same-stem CSV is used as sensors)")
    p.add_argument("--model", required=True, help="calibrated model directory")
    p.add_argument("--sensors", help="sensor CSV (t, then one column per channel)")
    p.add_argument("--out", required=True, help="EVENTS.jsonl to write")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("evaluate", help="detection quality on labelled footage, with baselines")
    p.add_argument("--model", required=True, help="calibrated model directory")
    p.add_argument("--data", nargs="+", required=True, help="labelled footage directories")
    p.add_argument("--fit", nargs="+", required=True, help="normal footage to fit baselines on")
    p.add_argument("--out", default="runs/evaluation", help="JSON and PNGs go here")
    p.add_argument("--benchmarks", help="also write the table into this BENCHMARKS.md")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("monitor", help="the always-on line monitor (embedded defaults: sim line)")
    _add_config_args(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("plc-sim", help="OPC UA PLC simulator with the line's tags")
    _add_config_args(p)
    p.add_argument("--host", default="127.0.0.1", help="listen address")
    p.add_argument("--port", type=int, default=4840, help="listen port")
    p.add_argument("--line", action="store_true", help="drive a simulated line in real time")
    p.set_defaults(func=cmd_plc_sim)

    p = sub.add_parser("bench", help="benchmarks that write BENCHMARKS.md")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    pb = bsub.add_parser("sim", help="simulator render speed (frames/s, one core)")
    _add_config_args(pb)
    pb.add_argument("--seconds", type=float, default=120.0, help="simulated seconds to render")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_sim)
    pb = bsub.add_parser("model", help="world model inference and training throughput")
    _add_config_args(pb)
    pb.add_argument("--model", help="model directory (default: fresh weights of the config)")
    pb.add_argument("--frames", type=int, default=500, help="frames to time")
    pb.add_argument("--memory", action="store_true", help="also training memory vs data size")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_model)
    pb = bsub.add_parser("quality", help="prediction error vs baselines; fine-tune vs scratch")
    _add_config_args(pb)
    pb.add_argument("--minutes", type=float, default=20.0, help="target-line footage")
    pb.add_argument("--train-steps", type=int, default=120, help="steps per run")
    pb.add_argument("--base", help="use this base model instead of pretraining one")
    pb.add_argument("--base-steps", type=int, default=250, help="pretraining steps")
    pb.add_argument("--samples", help="also train on this footage for --samples-minutes")
    pb.add_argument("--samples-minutes", type=float, default=5.0, help="budget for --samples")
    pb.add_argument("--lines", type=int, default=16, help="line appearances to pretrain on")
    pb.add_argument("--workdir", help="keep footage and models here")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_quality)
    pb = bsub.add_parser("detect", help="train on a new line, then evaluate alarms on faults")
    _add_config_args(pb)
    pb.add_argument("--workdir", default="runs/bench-detect", help="footage, model, results")
    pb.add_argument("--normal-minutes", type=float, default=60.0, help="training footage")
    pb.add_argument("--budget", type=float, default=15.0, help="training minutes")
    pb.add_argument("--eval-hours", type=float, default=3.0, help="labelled footage to score")
    pb.add_argument("--faults-per-hour", type=float, default=30.0, help="in the scored footage")
    pb.add_argument("--appearance-seed", type=int, default=9001, help="the unseen line variant")
    pb.add_argument("--init", help="fine-tune from this base model")
    pb.add_argument("--model", help="skip training: evaluate this model")
    pb.add_argument(
        "--calib-minutes",
        type=float,
        default=0.0,
        help="recalibrate a copy of the model on this much more normal footage (another seed)",
    )
    pb.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_detect)
    pb = bsub.add_parser("ingest", help="ingest throughput and peak memory")
    _add_config_args(pb)
    pb.add_argument("--minutes", type=float, default=10.0, help="minutes of footage to ingest")
    pb.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pb.set_defaults(func=cmd_bench_ingest)
    from foresight.realdata.commands import register_all

    register_all(bsub)
    from foresight.bench.faults import register as register_faults

    register_faults(bsub)
    from foresight.bench.loop import register as register_loop

    register_loop(bsub)
    from foresight.retrain.cli import register as register_retrain
    from foresight.retrain.cli import register_bench as register_bench_drift

    register_bench_drift(bsub)
    pd = bsub.add_parser("dashboard", help="trend reads over weeks of history (rollups vs scan)")
    pd.add_argument("--days", type=float, default=7.0, help="days of 10 Hz history to write")
    pd.add_argument("--workdir", default="runs/bench-dashboard", help="scratch folder (removed)")
    pd.add_argument("--benchmarks", default="BENCHMARKS.md", help="file to update")
    pd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pd.set_defaults(func=cmd_bench_dashboard)
    register_retrain(sub)
    from foresight.dashboard.cli import register as register_dashboard

    register_dashboard(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; errors become one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("absl", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ForesightError as e:
        print(f"foresight: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foresight: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
