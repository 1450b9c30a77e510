"""Logging setup, done once at the entry point: journald under systemd, stderr otherwise.

Under systemd (stderr is the journal stream named by ``$JOURNAL_STREAM``) each record goes
to journald natively with structured fields, so ``journalctl -u edge-detector CAMERA=front``
or ``ERROR_KIND=stall`` select entries:

==============  ==========================================================================
``PRIORITY``    syslog level from the record's level
``CAMERA``      ``extra={"camera": name}`` on the log call, else from a thread named
                ``capture-<camera>`` (each source's capture thread)
``STAGE``       ``extra={"stage": ...}``, else the package under ``edge.`` that logged
                (``capture``, ``infer``, ``publish``, ``health``, ``daemon``, ...)
``ERROR_KIND``  ``extra={"error_kind": ...}``, else the exception class of ``exc_info``
``LOGGER``, ``THREAD_NAME``, ``CODE_FILE``, ``CODE_LINE``, ``CODE_FUNC``, ``SYSLOG_IDENTIFIER``
==============  ==========================================================================

Stages add these with plain ``logging`` (``log.warning("...", extra={"camera": name})``);
they never import this module. Elsewhere records go to stderr as one line each, with the
camera in brackets. Noisy libraries get their levels in :data:`LIBRARY_LEVELS` only.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Dict, List, Mapping, Optional, Tuple

from edge.health.systemd import JOURNAL_SOCKET, JournalSender

LEVELS: Dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Libraries that log too much at INFO/DEBUG, in one place. Their warnings still show.
LIBRARY_LEVELS: Dict[str, int] = {
    "paho": logging.WARNING,
    "urllib3": logging.WARNING,
    "asyncio": logging.WARNING,
    "matplotlib": logging.WARNING,
    "PIL": logging.WARNING,
    "numba": logging.WARNING,
    "h5py": logging.WARNING,
    "filelock": logging.WARNING,
}

IDENTIFIER = "edge-detector"
_STAGES = ("capture", "preprocess", "infer", "postprocess", "publish", "health", "config", "calibrate", "cli")
_CAPTURE_THREAD = "capture-"  # edge.capture names each source's thread capture-<camera>
_MARK = "_edge_handler"  # attribute on the handlers installed here, so setup can be repeated


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def record_camera(record: logging.LogRecord) -> Optional[str]:
    """``extra={"camera": ...}``, or the camera whose capture thread (``capture-<name>``) logged."""
    camera = getattr(record, "camera", None)
    if camera:
        return str(camera)
    thread = record.threadName or ""
    if thread.startswith(_CAPTURE_THREAD) and len(thread) > len(_CAPTURE_THREAD):
        return thread[len(_CAPTURE_THREAD) :]
    return None


def record_stage(record: logging.LogRecord) -> Optional[str]:
    """``extra={"stage": ...}``, or the stage package that logged (``edge.capture.gst`` -> capture)."""
    stage = getattr(record, "stage", None)
    if stage:
        return str(stage)
    parts = record.name.split(".")
    if len(parts) >= 2 and parts[0] == "edge":
        return parts[1] if parts[1] in _STAGES or parts[1] in ("daemon", "pipeline") else None
    return None


def record_error_kind(record: logging.LogRecord) -> Optional[str]:
    kind = getattr(record, "error_kind", None)
    if kind:
        return str(kind)
    if record.exc_info and record.exc_info[0] is not None:
        return record.exc_info[0].__name__
    return None


def journal_fields(record: logging.LogRecord, message: str, identifier: str = IDENTIFIER) -> List[Tuple[str, str]]:
    """The journal entry of one record (``message`` is the formatted text, traceback included)."""
    fields = [
        ("MESSAGE", message),
        ("PRIORITY", str(_syslog_priority(record.levelno))),
        ("SYSLOG_IDENTIFIER", identifier),
        ("LOGGER", record.name),
        ("THREAD_NAME", record.threadName or ""),
        ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)),
        ("CODE_FUNC", record.funcName or ""),
    ]
    camera = record_camera(record)
    if camera:
        fields.append(("CAMERA", camera))
    stage = record_stage(record)
    if stage:
        fields.append(("STAGE", stage))
    kind = record_error_kind(record)
    if kind:
        fields.append(("ERROR_KIND", kind))
    return fields


class LineFormatter(logging.Formatter):
    """``[time] LEVEL logger: [camera] message``; time left out when systemd adds its own."""

    def __init__(self, timestamps: bool = True) -> None:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps else "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        camera = getattr(record, "camera", None)
        if not camera:
            return super().format(record)
        saved = record.msg, record.args
        try:
            record.msg, record.args = f"[{camera}] {record.getMessage()}", None
            return super().format(record)
        finally:
            record.msg, record.args = saved


class JournalHandler(logging.Handler):
    """Native journald entries with structured fields; falls back to ``fallback`` on a send error."""

    def __init__(
        self,
        sender: JournalSender,
        identifier: str = IDENTIFIER,
        fallback: Optional[IO[str]] = None,
    ) -> None:
        super().__init__()
        self.sender = sender
        self.identifier = identifier
        self.fallback = fallback if fallback is not None else sys.stderr
        self._line = LineFormatter(timestamps=False)
        self.setFormatter(logging.Formatter("%(message)s"))
        self._warned = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = journal_fields(record, self.format(record), self.identifier)
        except (TypeError, ValueError):  # a bad format string in a log call
            self.handleError(record)
            return
        try:
            self.sender.send(fields)
        except OSError as exc:
            # journald gone (restarting, or absent in a container): never lose the line.
            if not self._warned:
                self._warned = True
                self.fallback.write(f"WARNING {__name__}: journald unreachable ({exc}); logging to stderr\n")
            self.fallback.write(self._line.format(record) + "\n")
            self.fallback.flush()

    def close(self) -> None:
        self.sender.close()
        super().close()


def stderr_is_journal(env: Optional[Mapping[str, str]] = None, fd: int = 2) -> bool:
    """True when ``fd`` is the journal stream systemd connected (``$JOURNAL_STREAM`` = dev:inode)."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def choose_target(env: Optional[Mapping[str, str]] = None, fd: int = 2) -> str:
    """``journal`` when started by systemd with stderr on the journal, else ``stderr``."""
    env = os.environ if env is None else env
    if stderr_is_journal(env, fd) and os.path.exists(JOURNAL_SOCKET):
        return "journal"
    return "stderr"


def parse_level(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None


def setup_logging(
    level: str = "info",
    target: str = "auto",
    *,
    identifier: str = IDENTIFIER,
    stream: Optional[IO[str]] = None,
    journal_path: str = JOURNAL_SOCKET,
) -> str:
    """Configure the root logger once; safe to call again (replaces what it installed).

    ``target``: ``auto`` (journal under systemd, else stderr), ``journal`` or ``stderr``.
    Returns the target chosen.
    """
    if target == "auto":
        target = choose_target()
    if target not in ("journal", "stderr"):
        raise ValueError(f"unknown log target {target!r}; use auto, journal or stderr")
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(h)
        h.close()
    out = stream if stream is not None else sys.stderr
    handler: logging.Handler
    if target == "journal":
        handler = JournalHandler(JournalSender(journal_path), identifier, fallback=out)
    else:
        # Under systemd without the journal (StandardError=file:...), systemd stamps nothing,
        # but a terminal user wants times; only the journal adds its own.
        handler = logging.StreamHandler(out)
        handler.setFormatter(LineFormatter(timestamps=True))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    set_level(level)
    for name, lib_level in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(lib_level)
    logging.captureWarnings(True)
    return target


def set_level(level: str) -> None:
    """Change the level at run time (a SIGHUP reload with a new ``log_level``)."""
    logging.getLogger().setLevel(parse_level(level))
