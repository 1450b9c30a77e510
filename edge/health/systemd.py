"""systemd integration: readiness, status and watchdog (sd_notify), and the journal transport.

This is the only module that imports ``systemd`` (systemd-python). Without the library, both
protocols are spoken directly (they are small): an sd_notify message is one datagram of
``KEY=value`` lines sent to ``$NOTIFY_SOCKET``; a journal entry is one datagram of fields
sent to ``/run/systemd/journal/socket`` (see :mod:`edge.health.logs` for the fields).

The daemon owns one :class:`Notifier`. Outside systemd (no ``$NOTIFY_SOCKET``) every call is
a no-op, so the daemon never asks whether it runs under systemd.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import struct
import threading
import time
from types import ModuleType
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from edge.health.heartbeat import Heartbeats

# systemd-python is optional (extra "systemd"); both protocols work without it. Imported by
# name so that type checkers do not take the repository's systemd/ folder for the package.
_sd_daemon: Optional[ModuleType]
_sd_journal: Optional[ModuleType]
try:
    _sd_daemon = importlib.import_module("systemd.daemon")
    _sd_journal = importlib.import_module("systemd.journal")
except ImportError:  # pragma: no cover - depends on the environment
    _sd_daemon = _sd_journal = None

log = logging.getLogger(__name__)

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# A datagram must fit the socket's send buffer: longer values are cut (the library uses a memfd).
_MAX_JOURNAL_VALUE = 48 * 1024


def library_available() -> bool:
    """True when systemd-python is importable (used for notify and the journal)."""
    return _sd_daemon is not None


def _socket_address(value: str) -> Optional[str]:
    """The AF_UNIX address of ``$NOTIFY_SOCKET``: a path, or ``@name`` for an abstract socket."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # e.g. vsock:... (systemd >= 254 in VMs); not used on a Jetson


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


class _DatagramSender:
    """One unix datagram socket, kept open, sending to a fixed address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # non-inheritable (PEP 446)

    def send(self, data: bytes) -> None:
        self._sock.sendto(data, self.address)

    def close(self) -> None:
        self._sock.close()


class Notifier:
    """sd_notify for the daemon: READY/STATUS/RELOADING/STOPPING/EXTEND_TIMEOUT and the watchdog.

    ``tick()`` feeds the watchdog only while no worker heartbeat is older than ``stall_s``;
    the daemon calls it from its main loop at least twice per watchdog interval (the
    interval is ``watchdog_s``). ``status_interval_s`` is how often the daemon should
    refresh ``STATUS=`` (:meth:`status_due` tells it when).

    ``env`` (default ``os.environ``) and ``use_library`` exist for tests; with the library
    present and ``use_library`` left at None, it sends through ``systemd.daemon.notify``.
    """

    def __init__(
        self,
        heartbeats: Heartbeats,
        stall_s: float,
        status_interval_s: float,
        *,
        env: Optional[Mapping[str, str]] = None,
        use_library: Optional[bool] = None,
    ) -> None:
        env = os.environ if env is None else env
        self._heartbeats = heartbeats
        self.stall_s = float(stall_s)
        self.status_interval_s = float(status_interval_s)
        self._lock = threading.Lock()  # one datagram at a time
        self._tick_lock = threading.Lock()  # tick() from the main loop and from build progress
        self._sender: Optional[_DatagramSender] = None
        self._send: Optional[Callable[[str], None]] = None
        self._failed_once = False
        self._stalled: Set[str] = set()
        self._last_check = float("-inf")
        self._last_status = float("-inf")

        raw = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a unix socket address: not notifying systemd", raw)
        self.enabled: bool = address is not None
        self.watchdog_s: Optional[float] = _watchdog_interval(env) if self.enabled else None
        if use_library is None:
            use_library = library_available() and env is os.environ
        self.via_library = False
        if address is not None:
            if use_library and _sd_daemon is not None:
                self.via_library = True
                self._send = _sd_daemon.notify
            else:
                sender = self._sender = _DatagramSender(address)
                self._send = lambda message: sender.send(message.encode("utf-8"))
        # One heartbeat check (and ping) per 0.25 s at most; more often only for tiny intervals.
        self._check_every = min(self.watchdog_s / 4.0, 0.25) if self.watchdog_s else 0.25
        if self.enabled:
            via = "systemd-python" if self.via_library else "own socket"
            log.debug("systemd notify on %s (watchdog %s s, via %s)", raw, self.watchdog_s or "off", via)

    # ------------------------------------------------------------------ messages
    def ready(self, status: str) -> None:
        """Startup (or a reload) is complete: ``READY=1`` with a status line."""
        self._notify(("READY=1", "STATUS=" + _one_line(status)))
        self._last_status = time.monotonic()

    def status(self, text: str) -> None:
        """``STATUS=``: the one line ``systemctl status`` shows."""
        self._notify(("STATUS=" + _one_line(text),))
        self._last_status = time.monotonic()

    def status_due(self, now: Optional[float] = None) -> bool:
        """True when the last ``STATUS=`` is older than ``status_interval_s``."""
        now = time.monotonic() if now is None else now
        return now - self._last_status >= self.status_interval_s

    def extend_timeout(self, seconds: float, status: str) -> None:
        """Ask for ``seconds`` more before the start (or stop) timeout; send again before it runs out.

        It also feeds the watchdog as :meth:`tick` does: an engine rebuilt during a reload
        blocks the daemon's main loop for minutes while the old pipeline keeps working.
        """
        usec = max(1, int(seconds * 1_000_000))
        self._notify((f"EXTEND_TIMEOUT_USEC={usec}", "STATUS=" + _one_line(status)))
        self.tick()

    def reloading(self) -> None:
        """``RELOADING=1``; ``MONOTONIC_USEC`` lets systemd >= 253 match it to its SIGHUP."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify(("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration"))

    def stopping(self) -> None:
        self._notify(("STOPPING=1", "STATUS=stopping"))

    def tick(self, now: Optional[float] = None) -> None:
        """Feed the watchdog if every worker made progress within ``stall_s``.

        A stall is logged once when it starts (naming the workers) and once when it ends.
        """
        with self._tick_lock:
            self._tick(time.monotonic() if now is None else now)

    def _tick(self, now: float) -> None:
        if now - self._last_check < self._check_every:
            return
        self._last_check = now
        stalled = set(self._heartbeats.stalled(self.stall_s, now))
        new = stalled - self._stalled
        if new:
            names = ", ".join(sorted(stalled))
            log.error(
                "no progress for %.0f s from %s: %s",
                self.stall_s,
                names,
                "withholding the systemd watchdog (systemd restarts the service)"
                if self.watchdog_s
                else "no systemd watchdog to stop",
                extra={"stage": "health", "error_kind": "stall"},
            )
            self._notify(("STATUS=stalled: " + names,))
        elif self._stalled and not stalled:
            log.warning("workers progress again: %s", ", ".join(sorted(self._stalled)), extra={"stage": "health"})
        self._stalled = stalled
        if not stalled and self.watchdog_s:
            self._notify(("WATCHDOG=1",))

    @property
    def stalled(self) -> List[str]:  # workers found stalled at the last check
        return sorted(self._stalled)

    # ------------------------------------------------------------------ plumbing
    def _notify(self, lines: Sequence[str]) -> None:
        message = "\n".join(lines)
        with self._lock:
            if self._send is None:
                return
            try:
                self._send(message)
            except OSError as exc:
                # Best effort: systemd acts on what it misses (timeout, watchdog), never us.
                if not self._failed_once:
                    self._failed_once = True
                    log.error(
                        "cannot notify systemd (%s): %s",
                        lines[0].split("=")[0],
                        exc,
                        extra={"stage": "health", "error_kind": "notify"},
                    )

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            self._send = None
            self.enabled = False

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _watchdog_interval(env: Mapping[str, str]) -> Optional[float]:
    """Seconds from ``WATCHDOG_USEC`` when the watchdog is meant for this process, else None."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%s: not a number", env.get("WATCHDOG_USEC"))
        return None
    return usec / 1_000_000 if usec > 0 else None


# --------------------------------------------------------------------------- journal
def encode_journal_fields(fields: Iterable[Tuple[str, str]]) -> bytes:
    """Fields in journald's native datagram format (binary-safe form for multi-line values)."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if len(data) > _MAX_JOURNAL_VALUE:
            data = data[:_MAX_JOURNAL_VALUE] + b"... [truncated]"
        k = key.encode("ascii")
        if b"\n" in data:
            out += k + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += k + b"=" + data + b"\n"
    return bytes(out)


class JournalSender:
    """Sends one entry (a list of ``(FIELD, value)``) to journald.

    Uses ``systemd.journal.sendv`` when the library is there and ``path`` is the system
    socket; otherwise the native protocol on ``path``. Raises OSError when journald is
    unreachable (the logging handler then falls back to stderr).
    """

    def __init__(self, path: str = JOURNAL_SOCKET, use_library: Optional[bool] = None) -> None:
        if use_library is None:
            use_library = _sd_journal is not None and path == JOURNAL_SOCKET
        self.path = path
        self._lock = threading.Lock()
        self._sender: Optional[_DatagramSender] = None
        self._sendv: Optional[Callable[..., object]] = None
        if use_library and _sd_journal is not None:
            self._sendv = _sd_journal.sendv
        else:
            self._sender = _DatagramSender(path)
        self.via_library = self._sendv is not None

    def send(self, fields: Sequence[Tuple[str, str]]) -> None:
        if self._sendv is not None:
            self._sendv(*[f"{k}={v}" for k, v in fields])
            return
        data = encode_journal_fields(fields)
        with self._lock:
            if self._sender is None:
                raise OSError("journal sender is closed")
            self._sender.send(data)

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
