"""Logging setup: journald's native protocol over a real unix datagram socket, stderr lines,
target detection from $JOURNAL_STREAM, and the one place library levels are set.

(The test against a real journald is tests/integration/test_service_journal.py.)
"""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from edge.errors import SourceError
from edge.health import logs
from edge.health.systemd import JournalSender, encode_journal_fields


def decode_native(data: bytes) -> List[Tuple[str, str]]:
    """Parse journald's native datagram format (the reader side, written from its spec)."""
    out = []
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            value = data[nl + 9 : nl + 9 + size]
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
        out.append((key.decode(), value.decode()))
    return out


class FakeJournald:
    """A bound datagram socket standing in for /run/systemd/journal/socket (same protocol)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(5.0)

    def entry(self) -> Dict[str, str]:
        return dict(decode_native(self.sock.recv(1 << 20)))


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[FakeJournald]:
    j = FakeJournald(tmp_path / "journal.sock")
    yield j
    j.sock.close()


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    """Restore the root logger (handlers, level) and library levels after a test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    saved_libs = {name: logging.getLogger(name).level for name in logs.LIBRARY_LEVELS}
    yield root
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[1])
    for name, level in saved_libs.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


def make_record(
    name: str, level: int, msg: str, *args: object, exc: bool = False, **extra: object
) -> logging.LogRecord:
    logger = logging.getLogger(name)
    exc_info = None
    if exc:
        try:
            raise SourceError("rtsp://cam/ refused the connection", "check the URL")
        except SourceError:
            import sys

            exc_info = sys.exc_info()
    return logger.makeRecord(name, level, "gst.py", 42, msg, args, exc_info, "pull", extra or None)


def test_native_encoding_roundtrip_with_multiline_values() -> None:
    fields = [("MESSAGE", "line one\nline two"), ("CAMERA", "front"), ("EMPTY", "")]
    data = encode_journal_fields(fields)
    assert b"CAMERA=front\n" in data and b"MESSAGE\n" + struct.pack("<Q", 17) in data
    assert decode_native(data) == fields


def test_structured_fields_from_extra_and_logger_name() -> None:
    rec = make_record("edge.capture.gst", logging.WARNING, "reconnecting in %.1f s", 2.0, camera="front")
    f = dict(logs.journal_fields(rec, rec.getMessage()))
    assert f["MESSAGE"] == "reconnecting in 2.0 s"
    assert f["PRIORITY"] == "4"
    assert f["CAMERA"] == "front"
    assert f["STAGE"] == "capture"  # from the package that logged
    assert "ERROR_KIND" not in f
    assert f["SYSLOG_IDENTIFIER"] == "edge-detector" and f["LOGGER"] == "edge.capture.gst"
    assert f["CODE_LINE"] == "42" and f["CODE_FUNC"] == "pull"

    rec = make_record("edge.daemon", logging.ERROR, "camera failed", exc=True, camera="door", stage="capture")
    f = dict(logs.journal_fields(rec, rec.getMessage()))
    assert f["STAGE"] == "capture"  # explicit extra wins over the logger name
    assert f["ERROR_KIND"] == "SourceError"  # from exc_info
    assert f["PRIORITY"] == "3"

    rec = make_record("edge.health.systemd", logging.ERROR, "stall", error_kind="stall")
    f = dict(logs.journal_fields(rec, "stall"))
    assert (f["STAGE"], f["ERROR_KIND"]) == ("health", "stall")
    assert "STAGE" not in dict(logs.journal_fields(make_record("paho.mqtt", logging.INFO, "x"), "x"))

    rec = make_record("edge.capture.supervisor", logging.INFO, "streaming")
    rec.threadName = "capture-door"  # the source's own thread names the camera
    f = dict(logs.journal_fields(rec, "streaming"))
    assert (f["CAMERA"], f["STAGE"], f["THREAD_NAME"]) == ("door", "capture", "capture-door")


def test_journal_handler_sends_native_entries(journald: FakeJournald) -> None:
    handler = logs.JournalHandler(JournalSender(journald.path, use_library=False))
    try:
        rec = make_record("edge.capture.gst", logging.ERROR, "stream lost", exc=True, camera="front")
        handler.handle(rec)
        entry = journald.entry()
    finally:
        handler.close()
    assert entry["CAMERA"] == "front" and entry["STAGE"] == "capture" and entry["ERROR_KIND"] == "SourceError"
    assert entry["MESSAGE"].startswith("stream lost\nTraceback")  # the traceback travels binary-safe
    assert "SourceError: rtsp://cam/ refused the connection (check the URL)" in entry["MESSAGE"]


def test_journal_unreachable_falls_back_to_stderr_once(tmp_path: Path) -> None:
    out = io.StringIO()
    handler = logs.JournalHandler(JournalSender(str(tmp_path / "absent.sock"), use_library=False), fallback=out)
    try:
        handler.handle(make_record("edge.publish.mqtt", logging.WARNING, "broker down"))
        handler.handle(make_record("edge.capture.gst", logging.INFO, "connected", camera="front"))
    finally:
        handler.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "journald unreachable" in lines[0]
    assert lines[1] == "WARNING edge.publish.mqtt: broker down"
    assert lines[2] == "INFO edge.capture.gst: [front] connected"


def test_setup_stderr_lines_level_and_library_levels(clean_root: logging.Logger) -> None:
    out = io.StringIO()
    assert logs.setup_logging("warning", "stderr", stream=out) == "stderr"
    assert logs.setup_logging("info", "stderr", stream=out) == "stderr"  # again: replaces, never duplicates
    ours = [h for h in clean_root.handlers if getattr(h, "_edge_handler", False)]
    assert len(ours) == 1
    logging.getLogger("edge.capture.gst").info("first frame after %d ms", 80, extra={"camera": "front"})
    logging.getLogger("edge.infer").debug("hidden at info")
    logging.getLogger("paho.mqtt.client").info("library chatter")  # paho is held at WARNING
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(" INFO edge.capture.gst: [front] first frame after 80 ms")
    assert logging.getLogger("paho").level == logging.WARNING

    logs.set_level("debug")  # what a reload with a new log_level does
    logging.getLogger("edge.infer").debug("shown at debug")
    assert out.getvalue().splitlines()[-1].endswith("DEBUG edge.infer: shown at debug")
    with pytest.raises(ValueError, match="unknown log level"):
        logs.set_level("verbose")


def test_setup_journal_target(journald: FakeJournald, clean_root: logging.Logger) -> None:
    assert logs.setup_logging("info", "journal", journal_path=journald.path, identifier="edge-test") == "journal"
    logging.getLogger("edge.publish.mqtt").warning("outbox at %d messages", 1200, extra={"error_kind": "backlog"})
    entry = journald.entry()
    assert entry["MESSAGE"] == "outbox at 1200 messages"
    assert (entry["STAGE"], entry["ERROR_KIND"], entry["SYSLOG_IDENTIFIER"]) == ("publish", "backlog", "edge-test")


def test_journal_stream_detection(tmp_path: Path) -> None:
    """$JOURNAL_STREAM names stderr's device:inode when systemd connected it to the journal."""
    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "0" * 32}
        assert logs.stderr_is_journal(env, f.fileno())
        assert not logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f.fileno())
        assert not logs.stderr_is_journal({"JOURNAL_STREAM": "garbage"}, f.fileno())
        assert not logs.stderr_is_journal({}, f.fileno())
        # Redirected elsewhere (e.g. `edge-detector run 2>file` from a unit's shell): stderr.
        assert logs.choose_target({"INVOCATION_ID": "0" * 32}, f.fileno()) == "stderr"


def test_unknown_target_is_refused(clean_root: logging.Logger) -> None:
    with pytest.raises(ValueError, match="unknown log target"):
        logs.setup_logging("info", "syslog")
