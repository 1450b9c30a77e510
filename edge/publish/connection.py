"""Connection helpers without paho: TLS context, reconnect backoff, one-line problem descriptions.

Problems are sorted in two kinds: *transient* (broker down, network) retried with
exponential backoff, and *refusals* (credentials, certificates, a duplicate client id)
retried slowly (``mqtt.auth_retry_s``): retrying those fast fixes nothing and floods the
broker's log.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from edge.config.model import MqttConfig, TlsConfig
from edge.errors import ConfigError
from edge.publish.sender import Sender

log = logging.getLogger(__name__)

RELOG_S = 600.0  # repeat an unchanged connection problem in the log this often
STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
QUICK_S = 2.0  # connections closed sooner than this, 3 in a row, suggest a duplicate client id

# MQTT 5 reason codes (CONNACK / DISCONNECT) with the fix to suggest.
_HINTS: Dict[int, str] = {
    133: "check mqtt.client_id",
    134: "check mqtt.username and mqtt.password",
    135: "check mqtt.username, mqtt.password and the broker's ACL",
    136: "the broker is unavailable; it may be starting",
    137: "the broker is busy",
    138: "the broker has banned this client",
    140: "the broker wants another authentication method",
    142: "another client uses the same client id: give every device its own mqtt.client_id or device name",
    149: "a message is larger than the broker accepts",
    151: "the broker's quota is exceeded",
}
_REFUSALS = {133, 134, 135, 138, 140, 142}  # retried slowly


def tls_context(cfg: TlsConfig) -> ssl.SSLContext:
    """An SSL context from ``mqtt.tls``; ConfigError names the file that cannot be used."""
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.tls.ca_file {cfg.ca_file}: not a usable CA certificate: {exc}",
                          "give a PEM file with the CA that signed the broker's certificate") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file is not None:
        try:
            ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.tls.cert_file/key_file: cannot load {cfg.cert_file}: {exc}",
                              "give a PEM certificate and its unencrypted PEM private key") from None
    if cfg.insecure_skip_hostname_check:
        ctx.check_hostname = False
        log.warning("mqtt.tls.insecure_skip_hostname_check is on: the broker's certificate is checked but "
                    "not its host name, so any holder of a certificate from that CA can pose as the broker")
    return ctx


def describe_error(exc: BaseException, where: str, tls: bool) -> Tuple[str, bool]:
    """(one line naming the problem and its fix, whether it is a refusal retried slowly)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: {where} presented a certificate we do not trust: {exc.verify_message} "
                "(check mqtt.tls.ca_file and that mqtt.host matches the certificate)", True)
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return (f"TLS handshake with {where} failed: {reason} "
                "(check the broker's TLS listener, mqtt.port and mqtt.tls.cert_file/key_file)", True)
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (is the broker running and listening on that port?)", False
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name in {where}: {exc.strerror} (check mqtt.host and DNS)", False
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {where} (network down or a firewall in the way?)", False
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and tls:
        return (f"{where} closed the connection during the TLS handshake "
                "(it may reject our client certificate: check mqtt.tls.cert_file)", True)
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot connect to {where}: {text}", False


def describe_reason(code: int, text: str, where: str, refused: bool) -> Tuple[str, bool]:
    """A CONNACK refusal or broker DISCONNECT reason as one line, and whether to retry slowly."""
    hint = _HINTS.get(code)
    what = "refused the connection" if refused else "closed the connection"
    line = f"{where} {what}: {text}" + (f" ({hint})" if hint else "")
    return line, refused or code in _REFUSALS


class Backoff:
    """Exponential delays between ``min_s`` and ``max_s`` with ± ``jitter`` random spread."""

    def __init__(self, min_s: float, max_s: float, jitter: float, rng: Optional[random.Random] = None) -> None:
        self.min_s = min_s
        self.max_s = max(max_s, min_s)
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def spread(self, delay: float) -> float:
        return max(0.0, delay * (1.0 + self._rng.uniform(-self.jitter, self.jitter)))

    def next(self) -> float:
        delay = min(self.max_s, self.min_s * (2.0 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.spread(delay)

    def reset(self) -> None:
        self.attempt = 0


class ProblemLog:
    """Logs a connection problem once (again after RELOG_S or when it changes), not at every retry."""

    def __init__(self) -> None:
        self.last: Optional[str] = None
        self.since = 0.0
        self.count = 0
        self._reported = True  # the next "connected" is logged (the first one, or after a logged problem)

    def problem(self, text: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        self.count += 1
        if text != self.last or now - self.since > RELOG_S:
            extra = f" ({self.count} attempts)" if text == self.last else ""
            log.log(level, "MQTT: %s%s", text, extra)
            self.last, self.since, self._reported = text, now, True
        else:
            log.debug("MQTT: %s", text)

    def solved(self, text: str) -> None:
        after = f" after {self.count} failed attempt(s)" if self.count else ""
        log.log(logging.INFO if self._reported else logging.DEBUG, "MQTT: %s%s", text, after)
        self.count, self._reported = 0, False

    def stable(self) -> None:
        """The connection held: a problem seen again later is news again."""
        self.last = None


def valid_topic(topic: object) -> bool:
    """A topic we may publish on (an MQTT 5 response topic comes from the requester)."""
    return (
        isinstance(topic, str)
        and 0 < len(topic.encode("utf-8", "surrogatepass")) <= 65535
        and not any(c in topic for c in "+#\x00")
    )


def client_config_errors(cfg: MqttConfig, password: Optional[str]) -> None:
    if password is not None and not cfg.username and cfg.protocol == "3.1.1":
        raise ConfigError("mqtt.password is set without mqtt.username", "MQTT 3.1.1 needs a user name with a password")


class Connector:
    """The ``mqtt-connect`` thread: connects, waits while connected, reconnects after a backoff.

    A fresh client per attempt comes from ``factory(generation)`` (paho's Client, built in
    :mod:`edge.publish.mqtt`, with this object's ``on_connect``/``on_disconnect`` wired
    in); ``open(client)`` sends CONNECT. The sender learns of each connection by
    ``Sender.up`` (on CONNACK success only) and of its end by ``Sender.down``.
    """

    def __init__(self, cfg: MqttConfig, client_id: str, sender: Sender, stopping: threading.Event,
                 factory: Callable[[int], Any], open: Callable[[Any], None], on_up: Callable[[Any], None]) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.where = f"{cfg.host}:{cfg.port}"
        self.sender = sender
        self.stopping = stopping
        self.factory = factory
        self.open = open
        self.on_up = on_up
        self.connected = False  # set on CONNACK success only, by paho's network thread
        self.reconnects = 0
        self.gen = 0
        self._ended: Optional[Tuple[str, bool]] = None  # why the last attempt or connection ended
        self._connack = threading.Event()  # CONNACK (either outcome) or the connection ended
        self._lost = threading.Event()  # the connection ended

    def run(self) -> None:
        cfg = self.cfg
        backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s, cfg.reconnect_jitter)
        problems = ProblemLog()
        quick = 0  # connections in a row that ended within QUICK_S
        while not self.stopping.is_set():
            self.gen += 1
            gen = self.gen
            self._ended = None
            self._connack.clear()
            self._lost.clear()
            client = self.factory(gen)
            try:
                self.open(client)
            except (OSError, ValueError) as exc:  # ssl.SSLError and socket errors are OSErrors
                text, slow = describe_error(exc, self.where, cfg.tls.enabled)
                problems.problem(text, logging.ERROR if slow else logging.WARNING)
                self.stopping.wait(backoff.spread(cfg.auth_retry_s) if slow else backoff.next())
                continue
            client.loop_start()
            up = self._await_connack() and self.connected
            lived = 0.0
            if up:
                problems.solved(f"connected to {self.where} as {self.client_id}")
                since = time.monotonic()
                while not self.stopping.is_set() and not self._lost.wait(1.0) and client.is_connected():
                    pass
                lived = time.monotonic() - since
            elif self._ended is None and not self.stopping.is_set():
                self._ended = (f"no CONNACK from {self.where} within {cfg.connect_timeout_s:g} s "
                               "(is it an MQTT broker? TLS on a plain port or the reverse?)", False)
            self._end(client, gen, up)
            if self.stopping.is_set():
                return
            self.reconnects += int(up)
            # The backoff starts again only after a stable connection: a broker that drops us right
            # after accepting us (a duplicate client id, an ACL kick) is retried ever more slowly.
            quick = quick + 1 if up and lived < QUICK_S else 0
            if lived >= STABLE_S:
                backoff.reset()
                problems.stable()
            text, slow = self._ended or (f"connection to {self.where} lost", False)
            if quick >= 3 and not slow:
                problems.problem(f"{text}: the broker keeps closing our connections within seconds; is "
                                 f"another client using the client id {self.client_id!r}? (give every device its "
                                 "own mqtt.client_id or device name)", logging.ERROR)
            elif up and not slow:
                log.warning("MQTT: %s; reconnecting", text)
            else:
                problems.problem(text, logging.ERROR if slow else logging.WARNING)
            self.stopping.wait(backoff.spread(cfg.auth_retry_s) if slow else backoff.next())

    def _await_connack(self) -> bool:
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        while not self._connack.wait(0.1):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return False
        return True

    def _end(self, client: Any, gen: int, up: bool) -> None:
        """Close one connection and tell the sender, which requeues what was in flight."""
        if self.stopping.is_set() and up:
            self.sender.done.wait(self.sender.close_timeout + 5.0)  # the sender says "stopped", disconnects
        if not self._lost.is_set():
            client.disconnect()
            self._lost.wait(2.0)
        client.loop_stop()
        self.connected = False
        self.sender.down(gen)

    # ------------------------------------------------------------------ paho network thread
    def on_connect(self, client: Any, gen: int, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._ended = describe_reason(int(reason.value), str(reason), self.where, refused=True)
            self._connack.set()
            return
        window = self.cfg.max_inflight
        receive_max = getattr(props, "ReceiveMaximum", None) if self.cfg.protocol == "5" else None
        if receive_max:
            window = min(window, int(receive_max))
        self.on_up(client)
        self.connected = True
        self.sender.up(gen, client, window)
        self._connack.set()

    def on_disconnect(self, client: Any, gen: int, flags: Any, reason: Any, props: Any) -> None:
        if gen == self.gen:
            self.connected = False
            if self._ended is None and not self.stopping.is_set():
                if getattr(flags, "is_disconnect_packet_from_server", False):
                    self._ended = describe_reason(int(reason.value), str(reason), self.where, refused=False)
                else:
                    self._ended = (f"connection to {self.where} lost ({reason})", False)
        self.sender.down(gen)
        if gen == self.gen:
            self._lost.set()
            self._connack.set()
