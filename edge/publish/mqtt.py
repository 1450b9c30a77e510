"""MQTT publishing (paho-mqtt 2.x): durable outbox, availability, status, stats, commands, TLS.

Threads (all ended by :meth:`MqttSink.close`):

* the daemon's publisher thread calls ``publish``, ``publish_*``, ``poll``, ``stats`` and
  ``close``; it only appends to memory and never waits on the network or the disk;
* ``mqtt-send`` owns the outbox and the in-flight window: it sends (newest first, then the
  backlog), takes acknowledgements and commits to disk;
* ``mqtt-connect`` owns the connection: a fresh paho client per attempt, so nothing is
  retransmitted behind the outbox's back; backoff with jitter; slow retry after a refusal;
* paho's network thread (one per connection) only queues events for ``mqtt-send`` and
  commands for ``mqtt-commands``;
* ``mqtt-commands`` validates each command and calls ``on_command`` (so a slow command never
  delays detections or acknowledgements), then queues the answer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, NamedTuple, Optional, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.model import MqttConfig
from edge.config.secrets import reveal
from edge.postprocess.types import FrameResult
from edge.publish.base import Sink
from edge.publish.commands import CommandHandler, CommandProcessor, encode_answer
from edge.publish.connection import (
    Backoff,
    ProblemLog,
    client_config_errors,
    describe_error,
    describe_reason,
    tls_context,
    valid_topic,
)
from edge.publish.outbox import Message, Outbox
from edge.publish.payload import encode, new_session_id
from edge.publish.snapshot import RateLimiter
from edge.publish.status import OFFLINE, ONLINE, STOPPED, Topics, encode_json, stats_message, status_message

log = logging.getLogger(__name__)

BACKLOG_BATCH = 256  # backlog messages taken from the outbox at a time
VOLATILE_MAX = 1000  # queued status/answers/snapshots/QoS 0 messages
COMMAND_QUEUE = 32  # commands waiting for the command thread; more are answered "busy"
PERMANENT_REJECTIONS = {0x87, 0x90, 0x99}  # PUBACK codes a resend cannot fix: not authorized, bad topic/payload


class _Volatile(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Optional[Properties]
    kind: str  # status, answer, snapshot, qos0


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device: str, state_dir: Path, *,
                 on_command: Optional[CommandHandler] = None, session: Optional[str] = None) -> None:
        self.cfg = cfg
        self.device = device
        self.session = session or new_session_id()
        self.topics = Topics(cfg, device)
        self.client_id = cfg.client_id or f"edge-detector-{device}"
        self._where = f"{cfg.host}:{cfg.port}"
        self._password = reveal(cfg.password, "mqtt.password")
        client_config_errors(cfg, self._password)
        self._tls = tls_context(cfg.tls) if cfg.tls.enabled else None
        self._v5 = cfg.protocol == "5"
        self.outbox = Outbox(cfg.outbox.path or Path(state_dir) / "outbox.sqlite", cfg.outbox)
        self._commands = CommandProcessor(device, on_command)
        self._snapshots = RateLimiter(cfg.snapshot_min_interval_s)
        self._events: "queue.SimpleQueue[Tuple[Any, ...]]" = queue.SimpleQueue()
        self._wake = threading.Event()
        self._vlock = threading.Lock()
        self._volatile: Deque[_Volatile] = deque()
        self._cmd_queue: "queue.Queue[Tuple[bytes, Optional[str], Optional[bytes]]]" = queue.Queue(COMMAND_QUEUE)
        self._closing = threading.Event()
        self._stopping = threading.Event()
        self._sender_done = threading.Event()
        self._connack = threading.Event()  # CONNACK (either outcome) or the connection ended
        self._lost = threading.Event()  # the connection ended
        self._threads: Dict[str, threading.Thread] = {}
        self._fault: Optional[BaseException] = None
        self._closed = False
        self._close_timeout = 5.0
        # mqtt-send
        self._client: Optional[paho.Client] = None
        self._gen = 0
        self._window = cfg.max_inflight
        self._inflight: Dict[int, Message] = {}
        self._backlog_inflight = 0
        # mqtt-connect and paho callbacks
        self.connected = False
        self._conn_gen = 0
        self._ended: Optional[Tuple[str, bool]] = None  # why the last attempt or connection ended
        self._status: Optional[bytes] = None
        self._stats_seq = 0
        self._outbox_stats = self.outbox.counters()
        self.counts = {"sent": 0, "acked": 0, "rejected": 0, "reconnects": 0, "volatile_dropped": 0,
                       "qos0_dropped": 0, "late": 0}

    # ------------------------------------------------------------------ publisher thread
    def start(self) -> None:
        if self._threads:
            return
        targets = {"mqtt-send": self._send_main, "mqtt-connect": self._connect_main}
        if self.cfg.commands:
            targets["mqtt-commands"] = self._command_main
        for name, target in targets.items():
            t = self._threads[name] = threading.Thread(target=target, name=name, daemon=True)
            t.start()

    def publish(self, result: FrameResult, payload: Dict[str, Any]) -> None:
        self._put(self.topics.detections(result.camera), encode(payload), "qos0")

    def _put(self, topic: str, data: bytes, kind: str) -> None:
        if self._closed:
            self.counts["late"] += 1
            return
        if self.cfg.qos == 0:
            self._enqueue(_Volatile(topic, data, 0, False, None, kind))
        else:
            self.outbox.append(topic, data, self.cfg.qos)
            self._wake.set()

    def poll(self) -> None:
        if self._fault is not None:
            raise RuntimeError("the MQTT sender thread failed (see the log)") from self._fault

    def publish_status(self, status: Dict[str, Any]) -> None:
        self._status = encode_json(status_message(status, self.device, self.session))
        self._enqueue(_Volatile(self.topics.status, self._status, 1, True, None, "status"))

    def publish_stats(self, stats: Dict[str, Any]) -> None:
        self._stats_seq += 1
        self._put(self.topics.stats, encode_json(stats_message(stats, self.device, self.session, self._stats_seq)),
                  "qos0")

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        if not self._snapshots.allow(camera):
            return
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "image/jpeg"
        self._enqueue(_Volatile(self.topics.snapshot(camera), jpeg, min(self.cfg.qos, 1),
                                self.cfg.snapshot_retain, props, "snapshot"))

    def _enqueue(self, item: _Volatile) -> None:
        with self._vlock:
            if len(self._volatile) >= VOLATILE_MAX:
                self._count_volatile_drop(self._volatile.popleft())
            self._volatile.append(item)
        self._wake.set()

    def stats(self) -> Dict[str, Any]:
        c = self.counts
        out: Dict[str, Any] = {"connected": self.connected, **self._outbox_stats}
        out["dropped"] = out["outbox_dropped"] + c["qos0_dropped"]
        out.update(sent=c["sent"], acked=c["acked"], rejected=c["rejected"], reconnects=c["reconnects"],
                   commands=self._commands.handled, snapshots_limited=self._snapshots.limited)
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Wait (up to half of ``timeout``) for messages in flight, commit the outbox, publish
        ``stopped`` on the availability topic and disconnect."""
        if self._closed:
            return
        self._closed = True
        self._close_timeout = timeout
        if not self._threads:
            self.outbox.close()
            return
        self._closing.set()
        self._wake.set()
        self._threads["mqtt-send"].join(timeout + 5.0)
        self._stopping.set()
        for name, t in self._threads.items():
            if name != "mqtt-send":
                t.join(max(1.0, timeout / 2))
        log.info("MQTT: closed; %d message(s) kept in the outbox for the next start",
                 self._outbox_stats["outbox_depth"])

    # ------------------------------------------------------------------ mqtt-send
    def _send_main(self) -> None:
        try:
            self._send_loop()
        except Exception as exc:
            log.exception("MQTT sender failed")
            self._fault = exc
        finally:
            self._sender_done.set()
            self._stopping.set()

    def _send_loop(self) -> None:
        interval = self.cfg.outbox.commit_interval_ms / 1000.0
        tick = interval / 2 if interval > 0 else 0.05
        next_tick = time.monotonic() + tick
        more = False
        while True:
            if not more:
                self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            self._handle_events()
            self.outbox.drain()
            if interval == 0:
                self.outbox.commit(final=True)  # write-through: on disk before it is sent
            more = self._send() if self._client is not None else self._discard_volatile()
            now = time.monotonic()
            if now >= next_tick:
                self.outbox.commit(now)
                self._outbox_stats = self.outbox.counters()
                next_tick = now + tick
            if self._closing.is_set():
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
                if self._status is not None:
                    with self._vlock:
                        self._volatile.appendleft(_Volatile(self.topics.status, self._status, 1, True, None, "status"))
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
        assert client is not None
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

    def _send_one(self, client: paho.Client, m: Message) -> None:
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
            self._count_volatile_drop(v)
        return False

    def _count_volatile_drop(self, v: _Volatile) -> None:
        if v.kind == "qos0":
            self.counts["qos0_dropped"] += 1
        elif v.kind != "status":  # status is sent again after each connect
            self.counts["volatile_dropped"] += 1

    def _finish(self) -> None:
        deadline = time.monotonic() + self._close_timeout
        flush_until = time.monotonic() + self._close_timeout / 2
        while self._client is not None and time.monotonic() < flush_until:
            self._handle_events()
            self.outbox.drain()
            if self._client is None or not (self._inflight or self.outbox.has_live()):
                break
            self._send()
            self._wake.wait(0.02)
            self._wake.clear()
        self.outbox.close()
        self._outbox_stats = self.outbox.counters()
        self._stopping.set()
        client = self._client
        if client is not None:
            try:
                info = client.publish(self.topics.availability, STOPPED, qos=1, retain=True)
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (ValueError, RuntimeError) as exc:
                log.debug("MQTT: could not publish 'stopped': %s", exc)
            client.disconnect()

    # ------------------------------------------------------------------ mqtt-connect
    def _connect_main(self) -> None:
        cfg = self.cfg
        backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s, cfg.reconnect_jitter)
        problems = ProblemLog()
        while not self._stopping.is_set():
            self._conn_gen += 1
            gen = self._conn_gen
            self._ended = None
            self._connack.clear()
            self._lost.clear()
            client = self._new_client(gen)
            try:
                self._open(client)
            except (OSError, ValueError) as exc:  # ssl.SSLError and socket errors are OSErrors
                text, slow = describe_error(exc, self._where, self._tls is not None)
                problems.problem(text, logging.ERROR if slow else logging.WARNING)
                self._stopping.wait(backoff.spread(cfg.auth_retry_s) if slow else backoff.next())
                continue
            client.loop_start()
            up = self._connack.wait(cfg.connect_timeout_s) and self.connected
            if up:
                problems.solved(f"connected to {self._where} as {self.client_id}")
                backoff.reset()
                while not self._stopping.is_set() and not self._lost.wait(1.0) and client.is_connected():
                    pass
            elif self._ended is None and not self._stopping.is_set():
                self._ended = (f"no CONNACK from {self._where} within {cfg.connect_timeout_s:g} s "
                               "(is it an MQTT broker? TLS on a plain port or the reverse?)", False)
            self._end(client, gen, up)
            if self._stopping.is_set():
                return
            text, slow = self._ended or (f"connection to {self._where} lost", False)
            if up and not slow:
                log.warning("MQTT: %s; reconnecting", text)
                delay = backoff.next()
            else:
                problems.problem(text, logging.ERROR if slow else logging.WARNING)
                delay = backoff.spread(cfg.auth_retry_s) if slow else backoff.next()
            self.counts["reconnects"] += int(up)
            self._stopping.wait(delay)

    def _end(self, client: paho.Client, gen: int, up: bool) -> None:
        """Close one connection and tell mqtt-send, which requeues what was in flight."""
        if self._stopping.is_set() and up:
            self._sender_done.wait(self._close_timeout + 5.0)  # mqtt-send publishes "stopped" and disconnects
        if not self._lost.is_set():
            client.disconnect()
            self._lost.wait(2.0)
        client.loop_stop()
        self.connected = False
        self._events.put(("down", gen))
        self._wake.set()

    def _new_client(self, gen: int) -> paho.Client:
        kwargs: Dict[str, Any] = {}
        if not self._v5:
            kwargs["clean_session"] = True
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, userdata=gen,
                             protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311, reconnect_on_failure=False,
                             **kwargs)
        client.max_inflight_messages_set(0)  # our own window (self._window) bounds what is in flight
        client.max_queued_messages_set(0)
        client.connect_timeout = self.cfg.connect_timeout_s
        if self.cfg.username or self._password is not None:
            client.username_pw_set(self.cfg.username or "", self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
            client.tls_insecure_set(self.cfg.tls.insecure_skip_hostname_check)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _open(self, client: paho.Client) -> None:
        cfg = self.cfg
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True, properties=props)
        else:
            client.connect(cfg.host, cfg.port, cfg.keepalive_s)

    # ------------------------------------------------------------------ paho network thread
    def _on_connect(self, client: paho.Client, gen: int, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._ended = describe_reason(int(reason.value), str(reason), self._where, refused=True)
            self._connack.set()
            return
        window = self.cfg.max_inflight
        receive_max = getattr(props, "ReceiveMaximum", None) if self._v5 else None
        if receive_max:
            window = min(window, int(receive_max))
        if self.cfg.commands:
            client.subscribe(self.topics.command, qos=1)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self.connected = True
        self._events.put(("up", gen, client, window))
        self._wake.set()
        self._connack.set()

    def _on_disconnect(self, client: paho.Client, gen: int, flags: Any, reason: Any, props: Any) -> None:
        if gen == self._conn_gen:
            self.connected = False
            if self._ended is None and not self._stopping.is_set():
                if getattr(flags, "is_disconnect_packet_from_server", False):
                    self._ended = describe_reason(int(reason.value), str(reason), self._where, refused=False)
                else:
                    self._ended = (f"connection to {self._where} lost ({reason})", False)
        self._events.put(("down", gen))
        self._wake.set()
        if gen == self._conn_gen:
            self._lost.set()
            self._connack.set()

    def _on_publish(self, client: paho.Client, gen: int, mid: int, reason: Any, props: Any) -> None:
        self._events.put(("ack", gen, mid, int(reason.value) if reason is not None else 0))
        self._wake.set()

    def _on_message(self, client: paho.Client, gen: int, msg: paho.MQTTMessage) -> None:
        topic = corr = None
        if self._v5 and msg.properties is not None:
            topic = getattr(msg.properties, "ResponseTopic", None)
            corr = getattr(msg.properties, "CorrelationData", None)
        if msg.retain:
            body = self._commands.refuse(bytes(msg.payload), "retained commands are ignored (they would run again "
                                         "after every reconnect)", "publish commands without the retain flag")
            self._answer(body, topic, corr)
            return
        try:
            self._cmd_queue.put_nowait((bytes(msg.payload), topic, corr))
        except queue.Full:
            self._answer(self._commands.refuse(bytes(msg.payload), "too many commands at once",
                                               "wait for the answers, then retry"), topic, corr)

    # ------------------------------------------------------------------ mqtt-commands
    def _command_main(self) -> None:
        while not self._stopping.is_set():
            try:
                payload, topic, corr = self._cmd_queue.get(timeout=0.25)
            except queue.Empty:
                continue
            self._answer(self._commands.answer(payload), topic, corr)

    def _answer(self, body: Dict[str, Any], topic: Optional[str], corr: Optional[bytes]) -> None:
        if topic is not None and not valid_topic(topic):
            body = {**body, "note": "the MQTT 5 response topic was not valid; answered here"}
            topic = None
        props = None
        if self._v5 and corr is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = corr
        self._enqueue(_Volatile(topic or self.topics.response, encode_answer(body), 1, False, props, "answer"))

