"""The durable outbox on a real SQLite file: commits, acknowledgements, order, limits, disk failures."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import List

import pytest

from edge.config.model import OutboxConfig
from edge.publish.outbox import LIVE_MAX, Message, Outbox


def make(tmp_path: Path, **kw: object) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite", OutboxConfig(**kw))
    box.open()
    return box


def rows(path: Path) -> List[int]:
    with sqlite3.connect(str(path)) as db:
        return [r[0] for r in db.execute("SELECT id FROM outbox ORDER BY id")]


def fill(box: Outbox, n: int, start: int = 0, topic: str = "t") -> None:
    for i in range(start, start + n):
        box.append(topic, f"m{i}".encode(), 1)
    box.drain()


def payloads(msgs: List[Message]) -> List[str]:
    return [m.payload.decode() for m in msgs]


LATER = 1e9  # a monotonic time after every grace period


def test_acknowledged_in_time_never_touches_the_disk(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, 50)
    for m in box.take_live(100):
        box.acked(m)
    box.commit(LATER)
    assert rows(box.path) == []
    assert box.counters()["outbox_depth"] == 0
    assert box.counters()["outbox_durable"] == 50
    box.close()


def test_unacknowledged_messages_are_written_after_the_grace_then_deleted_when_acked(tmp_path: Path) -> None:
    box = make(tmp_path, commit_interval_ms=100)
    fill(box, 10)
    sent = box.take_live(100)
    box.commit(time.monotonic())  # younger than the grace (50 ms): not yet
    assert rows(box.path) == []
    assert box.counters()["outbox_durable"] == 0
    box.commit(LATER)
    assert rows(box.path) == [m.id for m in sent]
    assert box.counters()["outbox_durable"] == 10
    for m in sent[:4]:
        box.acked(m)
    box.commit(LATER)
    assert rows(box.path) == [m.id for m in sent[4:]]
    assert box.counters()["outbox_depth"] == 6
    box.close()


def test_write_through_when_the_commit_interval_is_zero(tmp_path: Path) -> None:
    box = make(tmp_path, commit_interval_ms=0)
    fill(box, 3)
    box.commit(time.monotonic(), final=True)  # what the sender does before sending when the interval is 0
    assert len(rows(box.path)) == 3
    box.close()


def test_backlog_survives_a_restart_and_comes_back_oldest_first(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, 30)
    box.take_live(5)  # in flight when the process "dies"
    box.close()  # final commit: everything unacknowledged is written
    box = make(tmp_path)
    assert box.counters()["outbox_depth"] == 30
    got = box.take_backlog(20) + box.take_backlog(20)
    assert payloads(got) == [f"m{i}" for i in range(30)]
    assert box.take_backlog(20) == []
    box.close()


def test_new_messages_go_before_the_backlog_and_ids_continue(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, 5)
    box.close()
    box = make(tmp_path)
    fill(box, 3, start=100)
    live = box.take_live(10)
    assert payloads(live) == ["m100", "m101", "m102"]
    assert min(m.id for m in live) > 5
    assert payloads(box.take_backlog(10)) == [f"m{i}" for i in range(5)]
    box.close()


def test_a_reconnect_sends_everything_unacknowledged_again_in_order(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, 10)
    first = box.take_live(10)
    box.commit(LATER)  # these are on disk now
    fill(box, 5, start=10)
    box.take_live(5)  # these are in flight but only in memory
    fill(box, 2, start=15)  # these were never sent
    for m in first[::2]:
        box.acked(m)
    box.requeue()
    assert payloads(box.take_live(10)) == ["m15", "m16"]
    again = box.take_backlog(3) + box.take_backlog(100)
    assert payloads(again) == [f"m{i}" for i in (1, 3, 5, 7, 9, 10, 11, 12, 13, 14)]
    assert box.take_backlog(100) == []
    box.close()


def test_backlog_from_memory_when_the_live_lane_overflows(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, LIVE_MAX + 20)  # nothing committed yet: the oldest 20 are backlog in memory
    live = box.take_live(LIVE_MAX + 100)
    assert len(live) == LIVE_MAX and payloads(live)[0] == "m20"
    assert payloads(box.take_backlog(100)) == [f"m{i}" for i in range(20)]
    box.close()


def test_a_refused_message_is_sent_again(tmp_path: Path) -> None:
    box = make(tmp_path)
    fill(box, 3)
    sent = box.take_live(3)
    box.commit(LATER)
    box.acked(sent[0])
    box.acked(sent[2])
    box.unsend(sent[1])
    assert payloads(box.take_backlog(10)) == ["m1"]
    box.close()


def test_count_limit_drops_the_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = make(tmp_path, max_messages=10)
    with caplog.at_level(logging.WARNING):
        for start in range(0, 100, 25):
            fill(box, 25, start=start)
            box.commit(LATER)
    assert box.dropped == 90
    assert len(rows(box.path)) == 10
    assert box.counters()["outbox_depth"] == 10
    box.requeue()
    assert payloads(box.take_live(1000) + box.take_backlog(1000)) == [f"m{i}" for i in range(90, 100)]
    assert sum("outbox full" in r.message for r in caplog.records) == 1  # logged once, not per drop
    box.close()


def test_size_limit(tmp_path: Path) -> None:
    box = make(tmp_path, max_mb=0.001)  # 1000 bytes
    for _ in range(40):
        box.append("t", bytes(100), 1)  # 101 bytes each with the topic
    box.drain()
    box.commit(LATER)
    assert box.counters()["outbox_depth"] == 9
    assert box.dropped == 31
    box.close()


def test_age_limit(tmp_path: Path) -> None:
    box = make(tmp_path, max_age_s=0.2)
    fill(box, 5)
    box.commit(LATER)
    assert len(rows(box.path)) == 5
    time.sleep(0.3)
    fill(box, 2, start=5)
    box.commit(LATER)
    assert box.dropped == 5
    box.requeue()
    assert payloads(box.take_live(10) + box.take_backlog(10)) == ["m5", "m6"]
    box.close()


def test_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    box = make(tmp_path)
    assert box.disk_error is None
    assert list(tmp_path.glob("outbox.sqlite.corrupt-*"))
    fill(box, 2)
    box.close()
    assert len(rows(path)) == 2


def test_an_unusable_path_keeps_messages_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    with caplog.at_level(logging.ERROR):
        box = Outbox(tmp_path / "file" / "outbox.sqlite", OutboxConfig(memory_max_messages=100))
        box.open()
    assert box.disk_error and "cannot open" in box.disk_error
    assert any("detection goes on" in r.message for r in caplog.records)
    fill(box, 150)
    box.commit(LATER)
    assert box.dropped == 50
    assert payloads(box.take_live(1000))[0] == "m50"
    box.close()


def test_a_full_disk_is_reported_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = make(tmp_path)
    db = box._store.db
    assert db is not None
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "database or disk is full"
    with caplog.at_level(logging.ERROR):
        for start in range(0, 400, 100):
            box.append("t", bytes(4000), 1)
            fill(box, 99, start=start)
            box.commit(LATER)
            box._next_try = 0.0  # retry at once instead of after a second
    assert box.disk_error is not None and "full" in box.disk_error
    assert sum("cannot write" in r.message for r in caplog.records) == 1
    assert box.counters()["outbox_depth"] == 400  # kept in memory
    db.execute("PRAGMA max_page_count=1073741823")
    box.commit(LATER)
    assert box.disk_error is None
    assert len(rows(box.path)) == 400
    box.close()
