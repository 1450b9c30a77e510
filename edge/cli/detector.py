"""``edge-detector``: run the daemon, check a config, measure speed."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from edge import __version__
from edge.cli.errors import run_main

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-detector", description=__doc__)
    p.add_argument("--version", action="version", version=f"edge-detector {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the detection daemon", description="Run the detection daemon.")
    run.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    run.add_argument("--sink", action="append", choices=["mqtt", "stdout"],
                     help="publish to this sink instead of the config's `sinks` (repeatable)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     help="override the config's log_level")

    chk = sub.add_parser("check-config", help="validate a configuration file",
                         description="Validate a configuration file; print each problem with its line.")
    chk.add_argument("config", type=Path)

    bench = sub.add_parser("bench", help="measure backend-only and full-pipeline speed",
                           description="Backend alone vs the whole pipeline on the same model, in one run.")
    bench.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    bench.add_argument("--frames", type=int, default=300, help="frames per measurement (default 300)")
    bench.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    bench.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p


def _setup_logging(level: str) -> None:
    from edge.health.logs import setup_logging

    setup_logging(level)


def _main(argv: Optional[List[str]]) -> int:
    args = _parser().parse_args(argv)
    from edge.config.load import load_config

    if args.command == "check-config":
        cfg = load_config(args.config)
        print(f"{args.config}: OK ({len(cfg.cameras)} camera(s), model {cfg.model.display_name})")
        return 0
    cfg = load_config(args.config)
    _setup_logging(getattr(args, "log_level", None) or cfg.log_level)
    if args.command == "bench":
        from edge.bench import run_bench

        return run_bench(cfg, args.frames, args.json, args.rounds)
    from edge.daemon import Daemon

    if args.sink:
        cfg = cfg.model_copy(update={"sinks": list(dict.fromkeys(args.sink))})
    return Daemon(cfg, args.config, sinks_overridden=bool(args.sink)).run()


def main(argv: Optional[List[str]] = None) -> int:
    return run_main("edge-detector", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
