"""The durable outbox: QoS 1/2 messages stay on disk until the broker acknowledges them.

Threads: :meth:`Outbox.append` may be called from any thread (the publisher); every other
method runs on one thread, the MQTT sender (see :mod:`edge.publish.mqtt`).

* ``append`` puts a message in memory; the sender gives it an id (increasing) and sends it
  at once. Every half commit interval, messages older than half the interval that are
  still unacknowledged are written in one transaction (:mod:`edge.publish.store`), and
  acknowledged ones that were written are deleted in it. A message acknowledged in time
  never touches the disk: with a healthy broker nothing is written (eMMC/SD wear).
* Commit window: a message is acknowledged or on disk at most ``commit_interval_ms``
  after it was appended (0: each message is written before it is sent).
* Order: the newest unsent messages (up to ``LIVE_MAX``) go first ("live lane"); the
  backlog (older unsent messages, disk then memory, by id, so per camera in order) fills
  what the in-flight window leaves. After a reconnect everything unacknowledged is unsent.
* Limits (count, bytes, age) drop the oldest messages and count them. A disk that cannot
  be written is reported; messages then stay in memory (``memory_max_messages``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from edge.config.model import OutboxConfig
from edge.publish.store import Limits, OutboxStore

log = logging.getLogger(__name__)

LIVE_MAX = 1000  # newest unsent messages sent before the backlog
INCOMING_MAX = 100_000  # appended, not yet taken by the sender thread
REOPEN_S = 10.0  # retry opening an outbox file that could not be opened
RELOG_S = 600.0  # repeat an unchanged problem in the log this often


class Message:
    __slots__ = ("backlog", "created", "dropped", "id", "mono", "payload", "qos", "topic")

    def __init__(self, id: int, topic: str, payload: bytes, qos: int, created: float, mono: float) -> None:
        self.id = id
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.created = created  # wall clock (survives restarts), for max_age_s
        self.mono = mono  # monotonic, for the commit grace (0 for rows read back from disk)
        self.dropped = False
        self.backlog = False  # sent by the backlog lane

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


class Outbox:
    def __init__(self, path: Path, cfg: OutboxConfig) -> None:
        self.path = path
        self.cfg = cfg
        self.limits = Limits(cfg.max_messages, cfg.max_mb * 1e6, cfg.max_age_s)
        self._store = OutboxStore(path, cfg.sync)
        self._lock = threading.Lock()
        self._incoming: Deque[Tuple[str, bytes, int, float, float]] = deque()
        self._unsaved: Dict[int, Message] = OrderedDict()  # neither on disk nor acknowledged; ids ascending
        self._live: Deque[Message] = deque()
        self._out: Dict[int, Message] = {}  # handed to the network in this connection
        self._to_delete: Dict[int, int] = {}  # acknowledged, maybe on disk: id → size
        self._cursor = 0  # backlog: highest id handed out or passed in this connection
        self._backlog_dirty = True
        self._next_id = 1
        self._opened = False
        self._next_open = 0.0
        self._next_try = 0.0
        self.disk_error: Optional[str] = None
        self._logged: Dict[str, Tuple[str, float]] = {}
        self.dropped = 0
        self.appended = 0
        self._first_id = 1

    def open(self) -> None:
        """Open the file (at start, not construction: a sink replaced on reload closes its outbox first).

        A file that cannot be opened is reported and retried; messages stay in memory meanwhile.
        """
        self._open()
        with self._lock:  # nothing appended before open has an id yet
            self._first_id = self._next_id

    # ------------------------------------------------------------------ any thread
    def append(self, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            if len(self._incoming) >= INCOMING_MAX:
                self._incoming.popleft()
                self.dropped += 1
            self._incoming.append((topic, payload, qos, time.time(), time.monotonic()))

    # ------------------------------------------------------------------ sender thread
    def drain(self) -> int:
        """Take what was appended: give ids, queue for sending. Returns how many."""
        with self._lock:
            batch, self._incoming = self._incoming, deque()
        for topic, payload, qos, created, mono in batch:
            m = Message(self._next_id, topic, payload, qos, created, mono)
            self._next_id += 1
            self._unsaved[m.id] = m
            self._live.append(m)
        self.appended += len(batch)
        while len(self._live) > LIVE_MAX:
            self._live.popleft()  # still in memory or on disk: the backlog lane sends it
            self._backlog_dirty = True
        if batch:
            self._limit_memory()
        return len(batch)

    @property
    def in_flight(self) -> int:
        return len(self._out)

    def has_live(self) -> bool:
        return bool(self._live)

    def take_live(self, n: int) -> List[Message]:
        out: List[Message] = []
        while self._live and len(out) < n:
            m = self._live.popleft()
            if not m.dropped:
                self._out[m.id] = m
                out.append(m)
        return out

    def take_backlog(self, n: int) -> List[Message]:
        """Up to ``n`` of the oldest unsent messages older than the live lane: disk, then memory."""
        if not self._backlog_dirty or n <= 0:
            return []
        stop = self._live[0].id if self._live else self._next_id
        out: List[Message] = []
        complete = self._backlog_from_disk(n, stop, out) if self._opened and self._store.count else True
        if complete and len(out) < n:
            for m in self._unsaved.values():
                if m.id >= stop or len(out) >= n:
                    break
                if m.id > self._cursor and m.id not in self._out:
                    out.append(m)
                    self._cursor = m.id
        for m in out:
            m.backlog = True
            self._out[m.id] = m
        if complete and len(out) < n:
            self._backlog_dirty = False
        return out

    def _backlog_from_disk(self, n: int, stop: int, out: List[Message]) -> bool:
        """Append up to ``n`` unsent rows to ``out``; False if the disk could not be read."""
        while len(out) < n:
            want = n - len(out)
            try:
                rows = self._store.read(self._cursor, stop, want)
            except sqlite3.Error as exc:
                self._disk_failed("read", exc)
                return False
            for id_, created, qos, topic, payload in rows:
                self._cursor = id_
                if id_ not in self._out and id_ not in self._to_delete:
                    out.append(Message(id_, topic, payload, qos, created, 0.0))
            if len(rows) < want:
                break
        return True

    def acked(self, m: Message) -> None:
        """The broker has it: forget it (its row is deleted at the next commit if it was written)."""
        self._out.pop(m.id, None)
        if self._unsaved.pop(m.id, None) is None:
            self._to_delete[m.id] = m.size

    def unsend(self, m: Message) -> None:
        """The broker refused it for now: send it again later, from the backlog."""
        self._out.pop(m.id, None)
        self._cursor = min(self._cursor, m.id - 1)
        self._backlog_dirty = True

    def requeue(self) -> None:
        """The connection is gone: everything in flight is unsent again, oldest first."""
        self._out.clear()
        self._cursor = 0
        self._backlog_dirty = True

    # ------------------------------------------------------------------ commits
    def commit(self, now: Optional[float] = None, final: bool = False) -> None:
        """Write what is due and delete what was acknowledged, in one transaction."""
        now = time.monotonic() if now is None else now
        if (not self._opened and not self._reopen(now)) or (self.disk_error and now < self._next_try and not final):
            self._limit_memory()
            return
        grace = 0.0 if final else self.cfg.commit_interval_ms / 2000.0
        write: List[Message] = []
        for m in self._unsaved.values():
            if m.mono > now - grace:
                break
            write.append(m)
        deletes = list(self._to_delete.items())
        if not write and not deletes and not self._store.over(self.limits):
            return
        written = {m.id for m in write}
        rest = [m for m in self._unsaved.values() if m.id not in written]
        try:
            last, n = self._store.write(
                [((m.id, m.created, m.qos, m.topic, m.payload), m.size) for m in write],
                deletes, self.limits, (len(rest), sum(m.size for m in rest)),
            )
        except sqlite3.Error as exc:
            self._disk_failed("write", exc)
            self._next_try = now + 1.0
            self._limit_memory()
            return
        for m in write:
            del self._unsaved[m.id]
        for id_, _ in deletes:
            self._to_delete.pop(id_, None)
        if write:
            self._backlog_dirty = True
        if last is not None:
            self._count_dropped(n)
            for m in self._live:
                if m.id <= last:
                    m.dropped = True
        if self.disk_error is not None:
            log.info("outbox %s: writing works again", self.path)
            self.disk_error = None
        self._limit_memory()

    def _limit_memory(self) -> None:
        """Bound memory: the oldest unwritten messages go beyond the limits (memory_max_messages
        while the disk fails), or when older than max_age_s."""
        cfg = self.cfg
        cap = cfg.memory_max_messages if self.disk_error else cfg.max_messages
        cutoff = time.time() - cfg.max_age_s
        n = 0
        while self._unsaved:
            m = next(iter(self._unsaved.values()))
            if len(self._unsaved) <= cap and m.created >= cutoff:
                break
            del self._unsaved[m.id]
            m.dropped = True
            n += 1
        if n:
            self._count_dropped(n)

    def _count_dropped(self, n: int) -> None:
        self.dropped += n
        self._log("dropped", logging.WARNING, "outbox full: dropped the %d oldest message(s), %d in all "
                  "(raise the mqtt.outbox limits or fix the broker connection)", n, self.dropped)

    def _log(self, key: str, level: int, fmt: str, *args: Any) -> None:
        """Log once per kind of problem, again when its text changes or after RELOG_S; DEBUG otherwise."""
        text = fmt % args
        last = self._logged.get(key)
        now = time.monotonic()
        loud = last is None or (key != "dropped" and last[0] != text) or now - last[1] > RELOG_S
        if loud:
            self._logged[key] = (text, now)
        log.log(level if loud else logging.DEBUG, "%s", text)

    # ------------------------------------------------------------------ the file
    def _open(self) -> None:
        try:
            self._store.open()
        except (OSError, sqlite3.Error) as exc:
            self._disk_failed("open", exc)
            return
        self._opened = True
        self._next_id = max(self._next_id, self._store.max_id + 1)
        if self._store.count:
            log.info("outbox %s: %d message(s) kept from before are sent when the broker is reachable",
                     self.path, self._store.count)

    def _reopen(self, now: float) -> bool:
        if now < self._next_open:
            return False
        self._next_open = now + REOPEN_S
        self._open()
        return self._opened

    def _disk_failed(self, what: str, exc: BaseException) -> None:
        self.disk_error = f"outbox {self.path}: cannot {what}: {exc}"
        self._log("disk", logging.ERROR, "%s (free space or fix permissions on that disk, or set "
                  "mqtt.outbox.path); detection goes on, up to %d messages are kept in memory meanwhile",
                  self.disk_error, self.cfg.memory_max_messages)

    def close(self) -> None:
        """Write everything still unacknowledged, then close the file."""
        self.drain()
        self.commit(final=True)
        self._store.close()
        self._opened = False
        if self._unsaved:
            log.error("outbox: %d unacknowledged message(s) could not be written and are lost (%s)",
                      len(self._unsaved), self.disk_error)

    # ------------------------------------------------------------------ numbers
    def counters(self) -> Dict[str, Any]:
        """For stats; call on the sender thread."""
        with self._lock:
            incoming = len(self._incoming)
        oldest = [t for t in (self._store.oldest, next((m.created for m in self._unsaved.values()), None))
                  if t is not None]
        return {
            "outbox_depth": max(0, self._store.count - len(self._to_delete)) + len(self._unsaved) + incoming,
            "outbox_oldest_s": round(max(0.0, time.time() - min(oldest)), 3) if oldest else 0.0,
            "outbox_uncommitted": len(self._unsaved) + incoming,
            # Messages appended since start that are all acknowledged or on disk (a prefix): a crash now
            # loses none of them.
            "outbox_durable": next(iter(self._unsaved), self._next_id) - self._first_id,
            "outbox_in_flight": len(self._out),
            "outbox_dropped": self.dropped,
            "outbox_error": self.disk_error,
        }
