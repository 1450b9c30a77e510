"""Frame hand-off: newest-frame mailboxes, round robin, releases, the frame ring, threads."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import pytest

from edge.frames import Frame, FrameMailbox, FrameRing


class Releases:
    """Counts release calls per (camera, seq)."""

    def __init__(self) -> None:
        self.count: Counter = Counter()
        self.lock = threading.Lock()

    def frame(self, camera: str, seq: int) -> Frame:
        def release() -> None:
            with self.lock:
                self.count[(camera, seq)] += 1

        return Frame(camera, seq, np.zeros((2, 2, 3), np.uint8), _release=release)


# --------------------------------------------------------------------------- Frame
def test_frame_size_and_release_once() -> None:
    r = Releases()
    f = r.frame("a", 1)
    f.image = np.zeros((480, 640, 3), np.uint8)
    assert (f.width, f.height) == (640, 480)
    f.release()
    f.release()
    assert r.count[("a", 1)] == 1
    Frame("b", 1, f.image).release()  # no owner: nothing to do


# --------------------------------------------------------------------------- FrameMailbox
def test_newest_frame_wins_and_drops_are_counted() -> None:
    r = Releases()
    box = FrameMailbox()
    box.add_camera("a")
    for seq in range(3):
        box.put(r.frame("a", seq))
    got = box.take(timeout=1)
    assert [(f.camera, f.seq) for f in got] == [("a", 2)]
    assert r.count == {("a", 0): 1, ("a", 1): 1}  # replaced frames released once, the taken one not
    assert box.counters() == {"a": (3, 2)}
    got[0].release()
    assert r.count[("a", 2)] == 1


def test_take_times_out_empty() -> None:
    box = FrameMailbox()
    box.add_camera("a")
    assert box.take(timeout=0.01) == []
    assert box.take(timeout=0) == []


def test_unknown_camera_frame_is_released_not_delivered() -> None:
    r = Releases()
    box = FrameMailbox()
    box.add_camera("a")
    box.put(r.frame("ghost", 1))
    assert r.count[("ghost", 1)] == 1
    assert box.take(timeout=0) == []
    assert "ghost" not in box.counters()


def test_add_camera_twice_keeps_one_slot() -> None:
    box = FrameMailbox()
    assert box.add_camera("a") is box.add_camera("a")
    assert list(box.counters()) == ["a"]


def _fill(box: FrameMailbox, r: Releases, cameras: str, seq: int) -> None:
    for c in cameras:
        box.put(r.frame(c, seq))


def test_round_robin_one_at_a_time() -> None:
    r = Releases()
    box = FrameMailbox()
    for c in "abc":
        box.add_camera(c)
    order = []
    for seq in range(6):
        _fill(box, r, "abc", seq)  # every camera always has a frame waiting
        order += [f.camera for f in box.take(1, timeout=1)]
    assert "".join(order) == "abcabc"


def test_round_robin_batches_take_distinct_cameras() -> None:
    r = Releases()
    box = FrameMailbox()
    for c in "abc":
        box.add_camera(c)
    batches = []
    for seq in range(3):
        _fill(box, r, "abc", seq)
        batches.append("".join(f.camera for f in box.take(2, timeout=1)))
    assert batches == ["ab", "ca", "bc"]


def test_round_robin_skips_empty_cameras_without_starving_others() -> None:
    r = Releases()
    box = FrameMailbox()
    for c in "abcd":
        box.add_camera(c)
    taken: Counter = Counter()
    for seq in range(400):
        _fill(box, r, "abd" if seq % 2 else "ad", seq)  # b only every other time, c never
        for f in box.take(1, timeout=1):
            taken[f.camera] += 1
            f.release()
    assert taken["c"] == 0
    assert taken["a"] > 0 and taken["b"] > 0 and taken["d"] > 0
    assert max(taken["a"], taken["d"]) - min(taken["a"], taken["d"]) <= 1
    assert sum(taken.values()) == 400


def test_remove_camera_releases_its_frame_and_round_robin_continues() -> None:
    r = Releases()
    box = FrameMailbox()
    for c in "abc":
        box.add_camera(c)
    _fill(box, r, "abc", 0)
    assert [f.camera for f in box.take(1, timeout=1)] == ["a"]
    box.remove_camera("b")
    assert r.count[("b", 0)] == 1
    assert [f.camera for f in box.take(3, timeout=1)] == ["c"]
    box.remove_camera("nobody")
    box.put(r.frame("b", 1))  # removed: released at once
    assert r.count[("b", 1)] == 1


def test_close_refuses_new_frames_and_lets_pending_ones_drain() -> None:
    r = Releases()
    box = FrameMailbox()
    for c in "ab":
        box.add_camera(c)
    box.put(r.frame("a", 0))
    box.put(r.frame("b", 0))
    taken = box.take(1, timeout=1)
    assert [f.camera for f in taken] == ["a"]
    box.close()
    assert r.count == {}  # the unread frame stays for the shutdown drain
    box.put(r.frame("a", 1))  # after close: released at once, never delivered
    assert r.count[("a", 1)] == 1
    drained = box.take(2, timeout=None)
    assert [(f.camera, f.seq) for f in drained] == [("b", 0)]
    assert box.take(timeout=None) == []  # closed and empty: returns at once
    for f in taken + drained:
        f.release()
    assert set(r.count.values()) == {1} and len(r.count) == 3


def test_discard_releases_pending_frames_as_dropped() -> None:
    r = Releases()
    box = FrameMailbox()
    box.add_camera("a")
    box.put(r.frame("a", 0))
    box.close()
    assert box.discard() == 1
    assert r.count == {("a", 0): 1}
    assert box.counters()["a"] == (1, 1)


def test_close_wakes_a_blocked_take() -> None:
    box = FrameMailbox()
    box.add_camera("a")
    started = threading.Event()
    result: List[List[Frame]] = []

    def wait() -> None:
        started.set()
        result.append(box.take(timeout=None))

    t = threading.Thread(target=wait)
    t.start()
    started.wait(10)
    box.close()
    t.join(10)
    assert not t.is_alive() and result == [[]]


def test_producers_and_consumer_counts_add_up() -> None:
    """4 cameras x 3000 frames against one consumer: nothing lost, nothing released twice."""
    cameras = ["cam0", "cam1", "cam2", "cam3"]
    n = 3000
    r = Releases()
    box = FrameMailbox()
    for c in cameras:
        box.add_camera(c)
    delivered: Dict[str, List[int]] = {c: [] for c in cameras}
    done = threading.Event()

    def produce(camera: str) -> None:
        for seq in range(n):
            box.put(r.frame(camera, seq))

    def consume() -> None:
        while True:
            frames = box.take(2, timeout=0.05)
            for f in frames:
                delivered[f.camera].append(f.seq)
                f.release()
            if not frames and done.is_set():
                return

    consumer = threading.Thread(target=consume)
    producers = [threading.Thread(target=produce, args=(c,)) for c in cameras]
    consumer.start()
    for p in producers:
        p.start()
    for p in producers:
        p.join(60)
    done.set()
    consumer.join(60)
    assert not consumer.is_alive()
    counters = box.counters()
    for c in cameras:
        received, dropped = counters[c]
        assert received == n
        assert len(delivered[c]) + dropped == n
        assert delivered[c] == sorted(delivered[c]) and len(set(delivered[c])) == len(delivered[c])
        assert delivered[c][-1] == n - 1  # the last frame always gets through
    assert len(r.count) == len(cameras) * n
    assert set(r.count.values()) == {1}


# --------------------------------------------------------------------------- FrameRing
def test_ring_needs_two_slots() -> None:
    with pytest.raises(ValueError):
        FrameRing(1)


def test_ring_hands_out_distinct_buffers_until_exhausted() -> None:
    ring = FrameRing(3)
    got = [ring.acquire((4, 6, 3)) for _ in range(3)]
    assert all(g is not None for g in got)
    bufs = [g[0] for g in got if g is not None]
    assert len({id(b) for b in bufs}) == 3 and all(b.shape == (4, 6, 3) and b.dtype == np.uint8 for b in bufs)
    assert ring.acquire((4, 6, 3)) is None and ring.exhausted == 1
    assert ring.acquire((4, 6, 3)) is None and ring.exhausted == 2
    got[1][1]()  # type: ignore[index]
    again = ring.acquire((4, 6, 3))
    assert again is not None and again[0] is bufs[1]  # reused, not reallocated


def test_ring_give_back_twice_does_not_hand_out_a_buffer_twice() -> None:
    ring = FrameRing(2)
    a = ring.acquire((2, 2, 3))
    b = ring.acquire((2, 2, 3))
    assert a is not None and b is not None
    a[1]()
    a[1]()
    first = ring.acquire((2, 2, 3))
    assert first is not None and first[0] is a[0]
    assert ring.acquire((2, 2, 3)) is None


def test_ring_shape_change_starts_a_fresh_set() -> None:
    calls: List[Tuple[int, ...]] = []

    def alloc(shape: Tuple[int, ...]) -> np.ndarray:
        calls.append(shape)
        return np.zeros(shape, np.uint8)

    ring = FrameRing(2, alloc)
    a = ring.acquire((4, 4, 3))
    assert a is not None and calls == [(4, 4, 3)] * 2
    b = ring.acquire((8, 8, 3))
    assert b is not None and b[0].shape == (8, 8, 3) and calls[2:] == [(8, 8, 3)] * 2
    a[1]()  # an old-size buffer coming back is dropped, not mixed in
    got = [ring.acquire((8, 8, 3)) for _ in range(2)]
    assert got[0] is not None and got[0][0].shape == (8, 8, 3) and got[1] is None


def test_ring_old_generation_buffer_is_not_readopted_after_size_flips_back() -> None:
    ring = FrameRing(2)
    old = ring.acquire((4, 4, 3))
    assert ring.acquire((8, 8, 3)) is not None
    first = ring.acquire((4, 4, 3))  # back to 4x4: a fresh set of 2, one handed out
    assert old is not None and first is not None
    old[1]()  # from the first 4x4 set: must not join the new one
    assert ring.acquire((4, 4, 3)) is not None
    assert ring.acquire((4, 4, 3)) is None  # never more than `slots` buffers out


def test_put_wait_applies_back_pressure_instead_of_dropping() -> None:
    r = Releases()
    box = FrameMailbox()
    box.add_camera("f")
    assert box.put_wait(r.frame("f", 1), timeout=0.1) is True
    second = r.frame("f", 2)
    assert box.put_wait(second, timeout=0.05) is False  # slot still full: caller keeps the frame
    assert r.count == {}
    done = threading.Event()

    def producer() -> None:
        box.put_paced(second)  # blocks until the consumer takes frame 1
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)
    assert [f.seq for f in box.take(timeout=1)] == [1]
    assert done.wait(5)
    assert [f.seq for f in box.take(timeout=1)] == [2]
    t.join(5)
    assert box.counters()["f"] == (2, 0)  # nothing dropped


def test_put_paced_returns_when_the_camera_goes_away() -> None:
    r = Releases()
    box = FrameMailbox()
    box.add_camera("f")
    box.put(r.frame("f", 1))
    t = threading.Thread(target=box.put_paced, args=(r.frame("f", 2),))
    t.start()
    box.remove_camera("f")
    t.join(5)
    assert not t.is_alive()
    assert r.count == {("f", 1): 1, ("f", 2): 1}
