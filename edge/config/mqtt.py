"""Configuration of publishing: the MQTT connection, TLS, topics and the durable outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator
from typing_extensions import Literal

from edge.config.base import Secret, Strict, _located, _must_exist


# --------------------------------------------------------------------------- publishing
class TlsConfig(Strict):
    enabled: bool = Field(False, description="Connect with TLS.")
    ca_file: Optional[Path] = Field(None, description="CA certificate(s) to trust (default: system store).")
    cert_file: Optional[Path] = Field(None, description="Client certificate (mutual TLS).")
    key_file: Optional[Path] = Field(None, description="Client private key.")
    insecure_skip_hostname_check: bool = Field(
        False, description="Do not check the server's host name (warned at start-up; avoid)."
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, v: Optional[Path]) -> Optional[Path]:
        return None if v is None else _must_exist(v)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.cert_file is not None and self.key_file is None:
            raise _located("cert_file is set but key_file is missing: give both for mutual TLS", "key_file")
        if self.key_file is not None and self.cert_file is None:
            raise _located("key_file is set but cert_file is missing: give both for mutual TLS", "cert_file")
        return self


class OutboxConfig(Strict):
    path: Optional[Path] = Field(None, description="SQLite outbox file (default: <state_dir>/outbox.sqlite).")
    commit_interval_ms: int = Field(
        100,
        ge=0,
        le=60000,
        description="Commit window: a message not yet acknowledged is on disk at most this long after it was "
        "published (0: write each message to disk before sending it).",
    )
    max_messages: int = Field(1_000_000, ge=10, description="Most messages kept; the oldest are dropped beyond.")
    max_mb: float = Field(256.0, gt=0, description="Most megabytes of messages (topic + payload) kept.")
    max_age_s: float = Field(7 * 86400.0, gt=0, description="Messages older than this are dropped.")
    sync: Literal["full", "normal"] = Field(
        "full",
        description="full: each commit survives a power cut (fsync); normal: survives a crash of the daemon only.",
    )
    memory_max_messages: int = Field(
        20_000, ge=100, description="Most messages held in memory while the outbox file cannot be written."
    )


_TOPIC_FIELDS = {
    "detections_topic": True,  # field → may use {camera}
    "snapshot_topic": True,
    "availability_topic": False,
    "status_topic": False,
    "stats_topic": False,
    "command_topic": False,
    "response_topic": False,
}


class MqttConfig(Strict):
    enabled: bool = Field(True, description="Publish to an MQTT broker.")
    host: str = Field("127.0.0.1", min_length=1, description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    client_id: Optional[str] = Field(
        None,
        min_length=1,
        max_length=128,
        description="Client id (default: edge-detector-<device>); must be unique per broker and stable.",
    )
    username: Optional[str] = Field(None, description="User name.")
    password: Optional[Secret] = Field(None, description="Password: a secret reference or literal.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keepalive interval.")
    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="Give up on one connection attempt after this.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of detection and stats messages; 0 bypasses the outbox.")
    max_inflight: int = Field(
        256, ge=1, le=65000, description="Most messages sent but not yet acknowledged (the broker may lower it)."
    )
    topic_prefix: str = Field("edge", min_length=1, description="First topic level.")
    detections_topic: str = Field(
        "{prefix}/{device}/{camera}/detections", description="Detections topic template."
    )
    availability_topic: str = Field(
        "{prefix}/{device}/availability", description="Retained online/offline/stopped topic (last will)."
    )
    status_topic: str = Field("{prefix}/{device}/status", description="Retained device status topic.")
    stats_topic: str = Field("{prefix}/{device}/stats", description="Periodic statistics topic.")
    commands: bool = Field(True, description="Subscribe to the command topic and answer commands.")
    command_topic: str = Field("{prefix}/{device}/command", description="Topic the device takes commands from.")
    response_topic: str = Field(
        "{prefix}/{device}/command/response",
        description="Where answers go when a command names no MQTT 5 response topic.",
    )
    snapshot_topic: str = Field("{prefix}/{device}/{camera}/snapshot", description="JPEG snapshot topic template.")
    snapshot_min_interval_s: float = Field(
        1.0, ge=0, description="At most one snapshot per camera this often; more are dropped and counted."
    )
    snapshot_retain: bool = Field(False, description="Retain the latest snapshot of each camera on the broker.")
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay.")
    reconnect_jitter: float = Field(0.2, ge=0, le=1, description="Random spread of each reconnect delay, a fraction.")
    auth_retry_s: float = Field(
        60.0, gt=0, description="Delay before retrying after the broker refused our credentials or TLS failed."
    )
    stats_interval_s: float = Field(60.0, gt=0, description="Publish stats this often.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable outbox.")

    @field_validator(*_TOPIC_FIELDS)
    @classmethod
    def _template(cls, v: str, info: ValidationInfo) -> str:
        with_camera = _TOPIC_FIELDS[str(info.field_name)]
        names = "{prefix}, {device}" + (", {camera}" if with_camera else "")
        try:
            v.format(prefix="p", device="d", **({"camera": "c"} if with_camera else {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder {exc}; use {names}") from None
        if "+" in v or "#" in v or not v:
            raise ValueError("a topic to publish on must be non-empty and must not contain + or #")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if "+" in v or "#" in v or "{" in v or "}" in v:
            raise ValueError("must not contain + # { or }")
        return v
