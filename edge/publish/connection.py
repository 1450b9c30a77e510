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
import time
from typing import Dict, Optional, Tuple

from edge.config.model import MqttConfig, TlsConfig
from edge.errors import ConfigError

log = logging.getLogger(__name__)

RELOG_S = 600.0  # repeat an unchanged connection problem in the log this often

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
    """Logs a connection problem once (and after RELOG_S), not at every retry."""

    def __init__(self) -> None:
        self.last: Optional[str] = None
        self.since = 0.0
        self.count = 0

    def problem(self, text: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        self.count += 1
        if text != self.last or now - self.since > RELOG_S:
            extra = f" ({self.count} attempts)" if text == self.last else ""
            log.log(level, "MQTT: %s%s", text, extra)
            self.last, self.since = text, now
        else:
            log.debug("MQTT: %s", text)

    def solved(self, text: str) -> None:
        after = f" after {self.count} failed attempt(s)" if self.count else ""
        log.info("MQTT: %s%s", text, after)
        self.last, self.count = None, 0


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
