"""The ``mqtt-send`` thread: moves messages from the outbox to the connected client.

It is the only thread that touches the outbox's state (other threads only append) and
the in-flight window, so acknowledgements, reconnects and commits need no shared locks:
paho's network thread and the connection thread report through :meth:`Sender.up`,
:meth:`Sender.down` and :meth:`Sender.ack`, which only queue an event.

Each round: queued status/answers/snapshots first, then the newest messages (live lane),
then the backlog, which may use at most half of the in-flight window so a live message
never waits behind more than that. The client is taken as an object (paho's ``Client``,
built in :mod:`edge.publish.mqtt`); a new one arrives with each connection, so nothing is
retransmitted behind the outbox's back: what was in flight is unsent again on ``down``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, NamedTuple, Optional, Tuple

from edge.publish.outbox import Message, Outbox

log = logging.getLogger(__name__)

BACKLOG_BATCH = 256  # backlog messages taken from the outbox at a time
VOLATILE_MAX = 1000  # queued status/answers/snapshots/QoS 0 messages
PERMANENT_REJECTIONS = {0x87, 0x90, 0x99}  # PUBACK codes a resend cannot fix: not authorized, bad topic/payload


class Volatile(NamedTuple):
    """A message that is not kept in the outbox: sent while connected, else dropped (and counted)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Any  # paho Properties or None
    kind: str  # status, answer, snapshot, qos0


class Sender:
    def __init__(self, outbox: Outbox, max_inflight: int, commit_interval_ms: int,
                 stopping: threading.Event, goodbye: Tuple[str, bytes]) -> None:
        self.outbox = outbox
        self.max_inflight = max_inflight
        self.interval = commit_interval_ms / 1000.0
        self.stopping = stopping  # set before the final disconnect, so nobody reconnects
        self.goodbye = goodbye  # (availability topic, b"stopped")
        self.closing = threading.Event()
        self.done = threading.Event()
        self.close_timeout = 5.0
        self.fault: Optional[BaseException] = None
        self.status: Optional[Volatile] = None  # the latest status, sent again after each connect
        self.counts = {"sent": 0, "acked": 0, "rejected": 0, "volatile_dropped": 0, "qos0_dropped": 0}
        self.outbox_stats = outbox.counters()
        self._events: "queue.SimpleQueue[Tuple[Any, ...]]" = queue.SimpleQueue()
        self._wake = threading.Event()
        self._vlock = threading.Lock()
        self._volatile: Deque[Volatile] = deque()
        self._client: Any = None
        self._gen = 0
        self._window = max_inflight
        self._inflight: Dict[int, Message] = {}
        self._backlog_inflight = 0

    # ------------------------------------------------------------------ any thread
    def append(self, topic: str, payload: bytes, qos: int) -> None:
        self.outbox.append(topic, payload, qos)
        self._wake.set()

    def enqueue(self, item: Volatile) -> None:
        with self._vlock:
            if len(self._volatile) >= VOLATILE_MAX:
                self._count_drop(self._volatile.popleft())
            self._volatile.append(item)
        self._wake.set()

    def up(self, gen: int, client: Any, window: int) -> None:
        self._event("up", gen, client, window)

    def down(self, gen: int) -> None:
        self._event("down", gen)

    def ack(self, gen: int, mid: int, code: int) -> None:
        self._event("ack", gen, mid, code)

    def _event(self, *ev: Any) -> None:
        self._events.put(ev)
        self._wake.set()

    def close(self) -> None:
        self.closing.set()
        self._wake.set()

    # ------------------------------------------------------------------ mqtt-send
    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            log.exception("MQTT sender failed")  # re-raised on the publisher thread by MqttSink.poll()
            self.fault = exc
        finally:
            self.done.set()
            self.stopping.set()

    def _loop(self) -> None:
        tick = self.interval / 2 if self.interval > 0 else 0.05
        next_tick = time.monotonic() + tick
        more = False
        while True:
            if not more:
                self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            self._handle_events()
            self.outbox.drain()
            if self.interval == 0:
                self.outbox.commit(final=True)  # write-through: on disk before it is sent
            more = self._send() if self._client is not None else self._discard_volatile()
            now = time.monotonic()
            if now >= next_tick:
                self.outbox.commit(now)
                self.outbox_stats = self.outbox.counters()
                next_tick = now + tick
            if self.closing.is_set():
                self._finish()
                return

    def _handle_events(self) -> None:
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return
            kind, gen = ev[0], ev[1]
            if kind == "ack":
                if gen == self._gen:
                    self._on_ack(ev[2], ev[3])
            elif kind == "up":
                self._client, self._gen, self._window = ev[2], gen, ev[3]
                self._reset_flight()
                if self.status is not None:
                    with self._vlock:
                        self._volatile.appendleft(self.status)
            elif kind == "down" and gen == self._gen and self._client is not None:
                self._client = None
                self._reset_flight()

    def _reset_flight(self) -> None:
        self._inflight.clear()
        self._backlog_inflight = 0
        self.outbox.requeue()

    def _on_ack(self, mid: int, code: int) -> None:
        m = self._inflight.pop(mid, None)
        if m is None:
            return  # a status, answer, snapshot or QoS 0 message
        if m.backlog:
            self._backlog_inflight -= 1
        if code < 0x80:
            self.outbox.acked(m)
            self.counts["acked"] += 1
        elif code in PERMANENT_REJECTIONS:
            self.outbox.acked(m)
            self.counts["rejected"] += 1
            log.warning("MQTT: the broker refused a message on %s (reason %d) and it is dropped "
                        "(check the broker's ACL for this client)", m.topic, code)
        else:
            self.outbox.unsend(m)
            log.info("MQTT: the broker refused a message on %s for now (reason %d); it is sent again", m.topic, code)

    def _send(self) -> bool:
        """Send what the window allows; True if more backlog could go at once."""
        client = self._client
        with self._vlock:
            volatile, self._volatile = self._volatile, deque()
        for v in volatile:
            try:
                client.publish(v.topic, v.payload, qos=v.qos, retain=v.retain, properties=v.props)
            except ValueError as exc:
                log.warning("MQTT: cannot publish on %s: %s", v.topic, exc)
        for m in self.outbox.take_live(self._window - len(self._inflight)):
            self._send_one(client, m)
        quota = min(self._window - len(self._inflight), max(1, self._window // 2) - self._backlog_inflight,
                    BACKLOG_BATCH)
        if quota <= 0:
            return False
        batch = self.outbox.take_backlog(quota)
        for m in batch:
            self._backlog_inflight += 1
            self._send_one(client, m)
        return len(batch) == quota

    def _send_one(self, client: Any, m: Message) -> None:
        try:
            info = client.publish(m.topic, m.payload, qos=m.qos)
        except ValueError as exc:  # a topic or payload MQTT cannot carry: resending cannot help
            log.warning("MQTT: cannot publish on %s: %s; message dropped", m.topic, exc)
            self.outbox.acked(m)
            self.counts["rejected"] += 1
            return
        # Even when paho answers "not connected", the "down" event that follows requeues it.
        self._inflight[info.mid] = m
        self.counts["sent"] += 1

    def _discard_volatile(self) -> bool:
        with self._vlock:
            volatile, self._volatile = self._volatile, deque()
        for v in volatile:
            self._count_drop(v)
        return False

    def _count_drop(self, v: Volatile) -> None:
        if v.kind == "qos0":
            self.counts["qos0_dropped"] += 1
        elif v.kind != "status":  # status is sent again after each connect
            self.counts["volatile_dropped"] += 1

    def _finish(self) -> None:
        """Wait (half the close timeout) for what is in flight, commit everything, say goodbye."""
        deadline = time.monotonic() + self.close_timeout
        flush_until = time.monotonic() + self.close_timeout / 2
        while self._client is not None and time.monotonic() < flush_until:
            self._handle_events()
            self.outbox.drain()
            if self._client is None or not (self._inflight or self.outbox.has_live()):
                break
            self._send()
            self._wake.wait(0.02)
            self._wake.clear()
        self.outbox.close()
        self.outbox_stats = self.outbox.counters()
        self.stopping.set()
        client = self._client
        if client is not None:
            try:
                info = client.publish(self.goodbye[0], self.goodbye[1], qos=1, retain=True)
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (ValueError, RuntimeError) as exc:
                log.debug("MQTT: could not publish 'stopped': %s", exc)
            client.disconnect()
