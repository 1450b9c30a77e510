"""Native names for our threads, so `top -H` and `ps -L` show which stage uses the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Any, Optional

_PR_SET_NAME = 15
_libc: Optional[Any] = None


def name_native_thread(name: Optional[str] = None) -> None:
    """Give the calling OS thread ``name`` (default: its Python name), cut to 15 bytes. Linux only."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        except OSError:
            return
    text = (name or threading.current_thread().name).encode(errors="replace")[:15]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(text), 0, 0, 0)
