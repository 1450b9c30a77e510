"""Frames and the hand-off between capture and inference.

A camera never queues stale frames: each camera owns a one-slot mailbox that keeps only
the newest frame and counts the ones it replaced. The inference side takes frames from
all mailboxes round robin, so one busy camera cannot starve another.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

Allocator = Callable[[Tuple[int, ...]], np.ndarray]


@dataclass
class Frame:
    """One decoded image, BGR uint8 H×W×3, with where and when it was captured.

    ``image`` may be a view of memory owned by someone else (a ring slot, a mapped
    GStreamer buffer): call :meth:`release` once it has been consumed.
    """

    camera: str
    seq: int
    image: np.ndarray
    timestamp: float = field(default_factory=time.time)
    monotonic: float = field(default_factory=time.monotonic)
    _release: Optional[Callable[[], None]] = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def release(self) -> None:
        """Give the image memory back to its owner. Safe to call more than once."""
        fn, self._release = self._release, None
        if fn is not None:
            fn()


class FrameRing:
    """A fixed set of reusable frame buffers that capture writes into.

    The allocator decides where they live: plain numpy here, pinned (and, on Jetson,
    GPU-mapped) host memory when the CUDA path is active. A buffer is handed out by
    :meth:`acquire` and comes back when the frame made from it is released.
    """

    def __init__(self, slots: int, allocator: Optional[Allocator] = None) -> None:
        if slots < 2:
            raise ValueError("a frame ring needs at least 2 slots")
        self._alloc: Allocator = allocator or (lambda shape: np.empty(shape, np.uint8))
        self._slots = slots
        self._free: List[np.ndarray] = []
        self._shape: Optional[Tuple[int, ...]] = None
        self._generation = 0  # bumped on every size change: buffers of older sets are not taken back
        self._lock = threading.Lock()
        self.exhausted = 0

    def acquire(self, shape: Tuple[int, ...]) -> Optional[Tuple[np.ndarray, Callable[[], None]]]:
        """Return a buffer of ``shape`` and its release callback, or None when all are in use.

        The callback may be called more than once; only the first call gives the buffer back.
        """
        with self._lock:
            if shape != self._shape:
                # Source size changed (reconnect with other caps): start a fresh set.
                self._shape = shape
                self._generation += 1
                self._free = [self._alloc(shape) for _ in range(self._slots)]
            if not self._free:
                self.exhausted += 1
                return None
            buf = self._free.pop()
            generation = self._generation
        given = [False]

        def give_back() -> None:
            with self._lock:
                if not given[0] and generation == self._generation:
                    self._free.append(buf)
                given[0] = True

        return buf, give_back


class LatestFrame:
    """A one-slot mailbox per camera: ``put`` replaces (and releases) an unread frame."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._frame: Optional[Frame] = None
        self.received = 0
        self.dropped = 0

    def _put(self, frame: Frame) -> Optional[Frame]:
        old, self._frame = self._frame, frame
        self.received += 1
        if old is not None:
            self.dropped += 1
        return old

    def _take(self) -> Optional[Frame]:
        frame, self._frame = self._frame, None
        return frame


class FrameMailbox:
    """Newest-frame slots for every camera, read round robin by the inference stage."""

    def __init__(self) -> None:
        self._slots: Dict[str, LatestFrame] = {}
        self._order: List[str] = []
        self._next = 0
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # a frame arrived
        self._space = threading.Condition(lock)  # a slot was emptied (for put_wait)
        self._closed = False

    def add_camera(self, camera: str) -> LatestFrame:
        with self._cond:
            slot = self._slots.get(camera)
            if slot is None:
                slot = self._slots[camera] = LatestFrame(camera)
                self._order.append(camera)
            return slot

    def remove_camera(self, camera: str) -> None:
        with self._cond:
            slot = self._slots.pop(camera, None)
            if slot is None:
                return
            self._order.remove(camera)
            frame = slot._take()
            self._space.notify_all()
        if frame is not None:
            frame.release()

    def put(self, frame: Frame) -> None:
        """Offer a frame; an unread older frame of the same camera is dropped and counted."""
        with self._cond:
            slot = self._slots.get(frame.camera)
            if slot is None or self._closed:
                old: Optional[Frame] = frame
            else:
                old = slot._put(frame)
                self._cond.notify()
        if old is not None:
            old.release()

    def put_wait(self, frame: Frame, timeout: float = 0.5) -> bool:
        """Offer a frame once the camera's previous one has been taken (back-pressure).

        For sources that are not live (a file processed as fast as inference allows):
        nothing is dropped, and the decoder waits instead of racing ahead. Waits at most
        ``timeout`` seconds; returns False (frame not taken, caller keeps it) on timeout,
        and True once the frame is handed over or released because the camera is gone.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                slot = self._slots.get(frame.camera)
                if slot is None or self._closed:
                    break
                if slot._frame is None:
                    slot._put(frame)
                    self._cond.notify()
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._space.wait(remaining)
        frame.release()
        return True

    def put_paced(self, frame: Frame) -> None:
        """``put_wait`` until the frame is taken (or released because its camera is gone)."""
        while not self.put_wait(frame):
            pass

    def take(self, max_frames: int = 1, timeout: Optional[float] = None) -> List[Frame]:
        """Up to ``max_frames`` newest frames from distinct cameras, fair round robin.

        Waits up to ``timeout`` seconds for the first frame; returns [] on timeout or close.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                frames = self._collect(max_frames)
                if frames or self._closed:
                    return frames
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _collect(self, max_frames: int) -> List[Frame]:
        frames: List[Frame] = []
        n = len(self._order)
        start, last = self._next, None
        for i in range(n):
            if len(frames) >= max_frames:
                break
            camera = self._order[(start + i) % n]
            frame = self._slots[camera]._take()
            if frame is not None:
                frames.append(frame)
                last = i
        if last is not None:
            self._next = (start + last + 1) % n
            self._space.notify_all()
        return frames

    def counters(self) -> Dict[str, Tuple[int, int]]:
        """camera → (frames received, frames dropped unread)."""
        with self._cond:
            return {c: (s.received, s.dropped) for c, s in self._slots.items()}

    def close(self) -> None:
        """Refuse new frames and wake every waiter. Frames already waiting can still be taken
        (shutdown drains them); :meth:`discard` releases them instead."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._space.notify_all()

    def discard(self) -> int:
        """Release every frame still waiting, counted as dropped; returns how many."""
        with self._cond:
            pending = [s._take() for s in self._slots.values()]
            for slot, frame in zip(list(self._slots.values()), pending):
                if frame is not None:
                    slot.dropped += 1
        for frame in pending:
            if frame is not None:
                frame.release()
        return sum(f is not None for f in pending)
