#!/usr/bin/env python3
"""Backend-only vs full-pipeline speed in one run (same as `edge-detector bench`).

    python tools/bench.py [-c config/demo.yaml] [--frames 300] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.cli.detector import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "-c" not in args and "--config" not in args:
        args = ["-c", str(ROOT / "config" / "demo.yaml"), *args]
    sys.exit(main(["bench", *args]))
