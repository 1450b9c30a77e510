"""The outbox file: one SQLite table in WAL mode, used from one thread (the MQTT sender).

Every method raises ``sqlite3.Error`` or ``OSError`` when the disk fails; the caller
(:class:`edge.publish.outbox.Outbox`) reports it and keeps messages in memory meanwhile.
A file that is not a database (damaged by a power cut) is moved aside, not deleted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, qos INTEGER NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL)"""

Row = Tuple[int, float, int, str, bytes]  # id, created (epoch), qos, topic, payload


class Limits:
    """What the outbox may hold: messages, bytes (topic + payload) and age in seconds."""

    def __init__(self, messages: int, size: float, age_s: float) -> None:
        self.messages = messages
        self.size = size
        self.age_s = age_s


class OutboxStore:
    def __init__(self, path: Path, sync: str = "full") -> None:
        self.path = path
        self.sync = sync
        self.db: Optional[sqlite3.Connection] = None
        self.count = 0  # rows
        self.size = 0  # bytes of topic + payload
        self.oldest: Optional[float] = None  # created time of the oldest row
        self.max_id = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._connect()
        except sqlite3.OperationalError:
            raise  # cannot open or write (permissions, read-only, full): not damage
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("outbox %s: no WAL journal on this file system (%s): commits are slower", self.path, mode)
            db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
            db.execute("PRAGMA journal_size_limit=8388608")
            db.execute(_SCHEMA)
            count, size, last = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0), MAX(id) FROM outbox").fetchone()
            oldest = self._oldest(db)
        except BaseException:
            db.close()
            raise
        self.count, self.size, self.max_id, self.oldest = int(count), int(size), int(last or 0), oldest
        return db

    def _set_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                p.rename(Path(f"{p}.corrupt-{stamp}"))
        log.error("outbox %s is damaged (%s): moved aside as *.corrupt-%s, starting an empty one",
                  self.path, exc, stamp)

    @staticmethod
    def _oldest(db: sqlite3.Connection) -> Optional[float]:
        row = db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def read(self, after: int, before: int, n: int) -> List[Row]:
        """Up to ``n`` rows with ``after < id < before``, oldest first."""
        assert self.db is not None
        rows = self.db.execute(
            "SELECT id, created, qos, topic, payload FROM outbox WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
            (after, before, n),
        ).fetchall()
        return [(int(i), float(c), int(q), str(t), bytes(p)) for i, c, q, t, p in rows]

    def write(
        self, rows: Sequence[Tuple[Row, int]], deletes: Iterable[Tuple[int, int]], limits: Limits,
        pending: Tuple[int, int] = (0, 0),
    ) -> Tuple[Optional[int], int]:
        """One transaction: insert ``(row, size)``s, delete ``(id, size)``s, then drop the oldest rows
        beyond ``limits`` (counting ``pending`` = messages and bytes held elsewhere).

        Returns (last dropped id or None, rows dropped).
        """
        db = self.db
        assert db is not None
        count, size = self.count, self.size
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (id, created, qos, topic, payload, size) VALUES (?, ?, ?, ?, ?, ?)",
                [(r[0], r[1], r[2], r[3], r[4], sz) for r, sz in rows],
            )
            count += len(rows)
            size += sum(sz for _, sz in rows)
            for id_, sz in deletes:
                if db.execute("DELETE FROM outbox WHERE id = ?", (id_,)).rowcount:
                    count, size = count - 1, size - sz
            last, n, b = self._beyond(db, count + pending[0] - limits.messages,
                                      size + pending[1] - limits.size, time.time() - limits.age_s)
            if last is not None:
                db.execute("DELETE FROM outbox WHERE id <= ?", (last,))
                count, size = count - n, size - b
            oldest = self._oldest(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.count, self.size, self.oldest = count, size, oldest
        if rows:
            self.max_id = max(self.max_id, max(r[0] for r, _ in rows))
        return last, n

    @staticmethod
    def _beyond(db: sqlite3.Connection, need_n: float, need_b: float, cutoff: float) -> Tuple[Optional[int], int, int]:
        """The oldest rows to drop: at least ``need_n`` rows and ``need_b`` bytes, and all older than cutoff."""
        first = db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        if need_n <= 0 and need_b <= 0 and (first is None or first[0] >= cutoff):
            return None, 0, 0
        last, n, b = None, 0, 0
        for id_, sz, created in db.execute("SELECT id, size, created FROM outbox ORDER BY id"):
            if n >= need_n and b >= need_b and created >= cutoff:
                break
            last, n, b = int(id_), n + 1, b + int(sz)
        return last, n, b

    def over(self, limits: Limits) -> bool:
        return (
            self.count > limits.messages
            or self.size > limits.size
            or (self.oldest is not None and self.oldest < time.time() - limits.age_s)
        )

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
