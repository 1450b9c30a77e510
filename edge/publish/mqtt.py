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
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.model import MqttConfig
from edge.config.secrets import reveal
from edge.postprocess.types import FrameResult
from edge.publish.base import Sink
from edge.publish.commands import CommandHandler, CommandProcessor, encode_answer
from edge.publish.connection import Connector, client_config_errors, tls_context, valid_topic
from edge.publish.outbox import Outbox
from edge.publish.payload import encode, new_session_id
from edge.publish.sender import Sender, Volatile
from edge.publish.snapshot import RateLimiter
from edge.publish.status import OFFLINE, ONLINE, STOPPED, Topics, encode_json, stats_message, status_message
from edge.threads import name_native_thread

log = logging.getLogger(__name__)

COMMAND_QUEUE = 32  # commands waiting for the command thread; more are answered "busy"


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device: str, state_dir: Path, *,
                 on_command: Optional[CommandHandler] = None, session: Optional[str] = None) -> None:
        self.cfg = cfg
        self.device = device
        self.session = session or new_session_id()
        self.topics = Topics(cfg, device)
        self.client_id = cfg.client_id or f"edge-detector-{device}"
        self._password = reveal(cfg.password, "mqtt.password")
        client_config_errors(cfg, self._password)
        self._tls = tls_context(cfg.tls) if cfg.tls.enabled else None
        self._v5 = cfg.protocol == "5"
        self.outbox = Outbox(cfg.outbox.path or Path(state_dir) / "outbox.sqlite", cfg.outbox)
        self._commands = CommandProcessor(device, on_command)
        self._snapshots = RateLimiter(cfg.snapshot_min_interval_s)
        self._stopping = threading.Event()
        self._sender = Sender(self.outbox, cfg.max_inflight, cfg.outbox.commit_interval_ms, self._stopping,
                              (self.topics.availability, STOPPED))
        self._cmd_queue: "queue.Queue[Tuple[bytes, Optional[str], Optional[bytes]]]" = queue.Queue(COMMAND_QUEUE)
        self._connector = Connector(cfg, self.client_id, self._sender, self._stopping, self._new_client,
                                    self._open, self._on_up)
        self._threads: Dict[str, threading.Thread] = {}
        self._fault: Optional[BaseException] = None
        self._closed = False
        self._late = 0  # published after close
        self._stats_seq = 0
        self._subscribe_refused = False

    # ------------------------------------------------------------------ publisher thread
    def start(self) -> None:
        if self._threads:
            return
        self.outbox.open()
        targets = {"mqtt-send": self._sender.run, "mqtt-connect": self._guarded(self._connector.run)}
        if self.cfg.commands:
            targets["mqtt-commands"] = self._guarded(self._command_main)
        for name, target in targets.items():
            t = self._threads[name] = threading.Thread(target=target, name=name, daemon=True)
            t.start()

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            name_native_thread()
            try:
                fn()
            except Exception as exc:
                log.exception("MQTT: %s failed", threading.current_thread().name)  # poll() re-raises it
                self._fault = exc

        return run

    def publish(self, result: FrameResult, payload: Dict[str, Any]) -> None:
        self._put(self.topics.detections(result.camera), encode(payload), "qos0")

    def _put(self, topic: str, data: bytes, kind: str) -> None:
        if self._closed:
            self._late += 1
            return
        if self.cfg.qos == 0:
            self._sender.enqueue(Volatile(topic, data, 0, False, None, kind))
        else:
            self._sender.append(topic, data, self.cfg.qos)

    def poll(self) -> None:
        """Raises if one of the MQTT threads died of a fault (a bug), so the daemon stops loudly."""
        fault = self._sender.fault or self._fault
        if fault is not None:
            raise RuntimeError("an MQTT thread failed (see the log)") from fault

    def publish_status(self, status: Dict[str, Any]) -> None:
        msg = Volatile(self.topics.status, encode_json(status_message(status, self.device, self.session)), 1, True,
                       None, "status")
        self._sender.status = msg
        self._sender.enqueue(msg)

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
        self._sender.enqueue(Volatile(self.topics.snapshot(camera), jpeg, min(self.cfg.qos, 1),
                                      self.cfg.snapshot_retain, props, "snapshot"))

    def stats(self) -> Dict[str, Any]:
        c = self._sender.counts
        out: Dict[str, Any] = {"connected": self._connector.connected, **self._sender.outbox_stats}
        out["dropped"] = out["outbox_dropped"] + c["qos0_dropped"]
        out.update(sent=c["sent"], acked=c["acked"], rejected=c["rejected"], reconnects=self._connector.reconnects,
                   commands=self._commands.handled, snapshots_limited=self._snapshots.limited)
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Wait (up to half of ``timeout``) for messages in flight, commit the outbox, publish
        ``stopped`` on the availability topic and disconnect."""
        if self._closed:
            return
        self._closed = True
        self._sender.close_timeout = timeout
        if not self._threads:
            return
        self._sender.close()
        self._threads["mqtt-send"].join(timeout + 5.0)
        self._stopping.set()
        for name, t in self._threads.items():
            if name != "mqtt-send":
                t.join(max(1.0, timeout / 2))
        log.info("MQTT: closed; %d message(s) kept in the outbox for the next start",
                 self._sender.outbox_stats["outbox_depth"])

    # ------------------------------------------------------------------ paho clients
    def _new_client(self, gen: int) -> paho.Client:
        kwargs: Dict[str, Any] = {}
        if not self._v5:
            kwargs["clean_session"] = True
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, userdata=gen,
                             protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311, reconnect_on_failure=False,
                             **kwargs)
        client.max_inflight_messages_set(0)  # the sender's window bounds what is in flight
        client.max_queued_messages_set(0)
        client.connect_timeout = self.cfg.connect_timeout_s
        if self.cfg.username or self._password is not None:
            client.username_pw_set(self.cfg.username or "", self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
            client.tls_insecure_set(self.cfg.tls.insecure_skip_hostname_check)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.on_connect = self._connector.on_connect
        client.on_disconnect = self._connector.on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _open(self, client: paho.Client) -> None:
        cfg = self.cfg
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True, properties=props)
        else:
            client.connect(cfg.host, cfg.port, cfg.keepalive_s)

    def _on_up(self, client: paho.Client) -> None:
        """On CONNACK success (paho's network thread): subscribe to commands, say "online"."""
        if self.cfg.commands:
            client.subscribe(self.topics.command, qos=1)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)

    # ------------------------------------------------------------------ paho network thread
    def _on_publish(self, client: paho.Client, gen: int, mid: int, reason: Any, props: Any) -> None:
        self._sender.ack(gen, mid, int(reason.value) if reason is not None else 0)

    def _on_subscribe(self, client: paho.Client, gen: int, mid: int, reasons: Any, props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed and not self._subscribe_refused:
            self._subscribe_refused = True
            log.error("MQTT: the broker refused our subscription to %s (%s): no commands will arrive "
                      "(check the broker's ACL for %s)", self.topics.command, failed[0], self.client_id)

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
        self._sender.enqueue(Volatile(topic or self.topics.response, encode_answer(body), 1, False, props, "answer"))

