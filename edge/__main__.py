"""``python -m edge`` is the ``edge-detector`` command."""

import sys

from edge.cli.detector import main

sys.exit(main())
