"""Run a CLI entry point: user errors become one line and an exit code, never a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Callable, List, Optional

from edge.errors import EXIT_USAGE, EdgeError

log = logging.getLogger(__name__)


def run_main(prog: str, fn: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    try:
        return fn(argv)
    except EdgeError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        if len(lines) == 1:
            print(f"{prog}: error: {lines[0]}", file=sys.stderr)
        else:
            print(f"{prog}: error: {len(lines)} problems:", file=sys.stderr)
            for line in lines:
                print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def usage_error(message: str) -> EdgeError:
    return EdgeError(message, "see --help", exit_code=EXIT_USAGE)
