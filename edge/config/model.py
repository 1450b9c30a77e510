"""The configuration schema: strict pydantic models, a description on every field.

Models only validate values; they never open files or sockets (secrets are resolved
when they are used, see :mod:`edge.config.secrets`). ``check-config`` and the daemon get
every error with its YAML location from :mod:`edge.config.load`.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated, Literal

from edge.config.labels import COCO_LABELS

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)


def _located(reason: str, *loc: Union[str, int]) -> PydanticCustomError:
    """An error reported at ``loc`` below the field or model being validated (see edge.config.messages)."""
    return PydanticCustomError("located", "{reason}", {"reason": reason, "loc": tuple(loc)})


def _must_exist(path: Path) -> Path:
    if not path.expanduser().exists():
        raise ValueError(f"file not found: {path}")
    return path.expanduser()


# --------------------------------------------------------------------------- secrets
class SecretRef(Strict):
    """Where a secret comes from: exactly one of ``env``, ``file`` or ``credential``."""

    env: Optional[str] = Field(None, description="Name of an environment variable holding the secret.")
    file: Optional[Path] = Field(None, description="File whose content (stripped) is the secret.")
    credential: Optional[str] = Field(
        None,
        description="Name of a systemd credential (LoadCredential=) read from $CREDENTIALS_DIRECTORY.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of env, file or credential")
        return self


Secret = Union[SecretRef, SecretStr]


# --------------------------------------------------------------------------- sources
class FileSource(Strict):
    kind: Literal["file"] = Field(description="Read a video file.")
    path: Path = Field(description="Video file; any container GStreamer can demux.")
    loop: bool = Field(True, description="Start again at the end instead of stopping.")
    realtime: bool = Field(
        False, description="Deliver frames at the file's frame rate, like a camera (else as fast as decoded)."
    )

    _exists = field_validator("path")(_must_exist)


class TestSource(Strict):
    kind: Literal["test"] = Field(description="GStreamer videotestsrc, for trying things out.")
    pattern: Literal["smpte", "ball", "snow", "black", "gradient"] = Field(
        "ball", description="videotestsrc pattern."
    )
    width: int = Field(640, ge=16, le=8192, description="Frame width in pixels.")
    height: int = Field(480, ge=16, le=8192, description="Frame height in pixels.")
    fps: float = Field(30.0, gt=0, le=1000, description="Frames per second.")


class RtspSource(Strict):
    kind: Literal["rtsp"] = Field(description="An RTSP camera or server.")
    url: str = Field(description="rtsp:// or rtsps:// URL; credentials may be embedded (they are redacted in logs).")
    transport: Literal["tcp", "udp", "auto"] = Field("tcp", description="RTP transport.")
    latency_ms: int = Field(200, ge=0, le=10000, description="rtspsrc jitter buffer latency.")
    tcp_timeout_s: float = Field(
        3.0, gt=0, le=120, description="How long a connection attempt may block before it fails."
    )
    username: Optional[str] = Field(None, description="User name, if not in the URL.")
    password: Optional[Secret] = Field(None, description="Password (a secret reference), if not in the URL.")
    codec: Literal["auto", "h264", "h265"] = Field("auto", description="Video codec of the stream.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^rtsps?://[^/\s]+", v):
            raise ValueError("must start with rtsp:// or rtsps:// followed by a host")
        return v


class V4l2Source(Strict):
    kind: Literal["v4l2"] = Field(description="A USB (V4L2) camera.")
    device: str = Field("/dev/video0", description="Device node. A missing device is retried, not fatal.")
    format: Literal["auto", "mjpeg", "yuyv"] = Field("auto", description="Capture format.")
    width: Optional[int] = Field(None, ge=16, le=8192, description="Requested width (camera default if unset).")
    height: Optional[int] = Field(None, ge=16, le=8192, description="Requested height.")
    fps: Optional[float] = Field(None, gt=0, le=1000, description="Requested frame rate.")


class CsiSource(Strict):
    kind: Literal["csi"] = Field(description="A Jetson CSI camera through nvarguscamerasrc.")
    sensor_id: int = Field(0, ge=0, le=15, description="nvarguscamerasrc sensor-id.")
    sensor_mode: Optional[int] = Field(None, ge=0, le=31, description="nvarguscamerasrc sensor-mode.")
    width: int = Field(1920, ge=16, le=8192, description="Capture width.")
    height: int = Field(1080, ge=16, le=8192, description="Capture height.")
    fps: float = Field(30.0, gt=0, le=240, description="Capture frame rate.")
    flip_method: int = Field(0, ge=0, le=7, description="nvvidconv flip-method.")


class PipelineSource(Strict):
    kind: Literal["pipeline"] = Field(description="Expert override: a gst-launch description ending in video.")
    description: str = Field(
        description="gst-launch syntax producing raw video; edge-detector appends the conversion and appsink."
    )
    live: bool = Field(True, description="Treat end-of-stream as a disconnect and reconnect.")

    @field_validator("description")
    @classmethod
    def _no_sink(cls, v: str) -> str:
        if "appsink" in v:
            raise ValueError("leave out the appsink: edge-detector adds its own")
        if not v.strip():
            raise ValueError("must not be empty")
        return v


Source = Annotated[
    Union[FileSource, TestSource, RtspSource, V4l2Source, CsiSource, PipelineSource],
    Field(discriminator="kind"),
]


class ReconnectConfig(Strict):
    stall_timeout_s: float = Field(2.0, gt=0, le=600, description="No frame for this long = stalled: rebuild.")
    backoff_initial_s: float = Field(0.5, gt=0, le=600, description="First wait before reconnecting.")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Longest wait between attempts.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random spread of each wait, as a fraction.")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600, description="An attempt without a first frame for this long has failed: rebuild."
    )


class CameraConfig(Strict):
    name: str = Field(pattern=NAME_RE, description="Camera name, used in topics and logs.")
    enabled: bool = Field(True, description="Capture and detect on this camera.")
    source: Source = Field(description="Where frames come from; `kind` selects the source type.")
    decoder: Literal["auto", "hardware", "software"] = Field(
        "auto", description="Video decoding: hardware (Jetson nvv4l2decoder) when available, or forced."
    )
    frame_size: Optional[Tuple[int, int]] = Field(
        None,
        description="[width, height]: scale frames to this size in the capture pipeline (nvvidconv on Jetson, "
        "videoscale elsewhere); default: the source's own size.",
    )
    detect_fps: Optional[float] = Field(
        None, gt=0, le=1000, description="Detect at most this many frames per second (default: every frame)."
    )
    score_threshold: Optional[float] = Field(
        None, ge=0, le=1, description="Override detect.score_threshold for this camera."
    )
    classes: Optional[List[str]] = Field(None, description="Override detect.classes for this camera.")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Reconnect policy.")

    @field_validator("frame_size")
    @classmethod
    def _frame_size(cls, v: Optional[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
        if v is not None and not all(16 <= n <= 8192 for n in v):
            raise ValueError("width and height must be between 16 and 8192")
        return v


# --------------------------------------------------------------------------- model
class InputConfig(Strict):
    """How frames become the model's input tensor."""

    width: Optional[int] = Field(None, ge=8, le=8192, description="Input width; read from the model if unset.")
    height: Optional[int] = Field(None, ge=8, le=8192, description="Input height; read from the model if unset.")
    color: Literal["bgr", "rgb"] = Field("rgb", description="Channel order the model expects.")
    resize: Literal["letterbox", "stretch"] = Field(
        "letterbox", description="letterbox keeps the aspect ratio and pads; stretch resizes to fit."
    )
    pad_value: int = Field(114, ge=0, le=255, description="Letterbox padding value (pixels).")
    center: bool = Field(True, description="Centre the letterboxed image (else pad right/bottom only).")
    mean: List[float] = Field(
        [0.0, 0.0, 0.0], min_length=3, max_length=3, description="Per-channel mean in pixel units (model order)."
    )
    std: List[float] = Field(
        [255.0, 255.0, 255.0],
        min_length=3,
        max_length=3,
        description="Per-channel std in pixel units; [255,255,255] is plain 1/255 scaling.",
    )

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: List[float]) -> List[float]:
        if any(s == 0 for s in v):
            raise ValueError("std values must not be 0")
        return v


class ModelConfig(Strict):
    path: Path = Field(description="ONNX model file (the TensorRT engine is built from it).")
    name: Optional[str] = Field(None, description="Model name in payloads (default: the file name).")
    format: Literal["auto", "nanodet", "yolov5", "yolov8", "end2end", "efficientnms"] = Field(
        "auto", description="Output layout; auto recognises it from the output shapes."
    )
    labels: Union[Literal["coco"], List[str], Path] = Field(
        "coco", description="Class names: 'coco', a list, or a text file with one name per line."
    )
    input: InputConfig = Field(default_factory=InputConfig, description="Preprocessing.")
    strides: List[int] = Field([8, 16, 32], description="Feature strides (NanoDet/GFL heads).")
    reg_max: Optional[int] = Field(
        None, ge=1, le=64, description="GFL distribution bins - 1 (NanoDet); read from the outputs if unset."
    )

    _exists = field_validator("path")(_must_exist)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Union[str, List[str], Path]) -> Union[str, List[str], Path]:
        if isinstance(v, Path):
            _must_exist(v)
        return v

    @property
    def display_name(self) -> str:
        return self.name or self.path.stem


# --------------------------------------------------------------------------- backend
class OnnxRuntimeConfig(Strict):
    threads: int = Field(0, ge=0, le=256, description="Intra-op threads (0: one per core).")
    providers: List[str] = Field(
        ["auto"], description="Execution providers in order; 'auto' uses CUDA/TensorRT providers when present."
    )


class TensorRtConfig(Strict):
    engine_dir: Optional[Path] = Field(None, description="Engine cache directory (default: <state_dir>/engines).")
    workspace_mb: Optional[int] = Field(
        None, ge=16, description="Builder workspace cap in MiB (default: sized from free device memory)."
    )
    dla_core: Optional[int] = Field(None, ge=0, le=1, description="Run on this DLA core (GPU fallback on).")
    batch: int = Field(1, ge=1, le=64, description="Engine batch size (frames from several cameras).")
    calibration_cache: Optional[Path] = Field(None, description="INT8 calibration cache (TensorRT 8.x-10.x).")
    qdq_model: Optional[Path] = Field(None, description="Explicitly quantized (Q/DQ) ONNX model for INT8.")
    timing_cache: bool = Field(True, description="Keep and reuse a builder timing cache.")
    mapped_memory: Literal["auto", "on", "off"] = Field(
        "auto", description="Zero-copy mapped pinned frames (auto: on integrated GPUs)."
    )
    gpu_preprocess: bool = Field(True, description="Preprocess on the GPU with a CUDA kernel.")
    device: int = Field(0, ge=0, le=15, description="CUDA device (GPU) index.")
    layer_precisions: Optional[Dict[str, Literal["fp32", "fp16", "int8"]]] = Field(
        None,
        description="Pin TensorRT layers (by name) to a precision, e.g. from edge-calibrate's mixed-precision "
        "search (TensorRT 8.2-10.x).",
    )


class BackendConfig(Strict):
    kind: Literal["auto", "onnxruntime", "tensorrt"] = Field(
        "auto", description="auto: TensorRT when importable, else ONNX Runtime (the choice is logged)."
    )
    precision: Literal["fp32", "fp16", "int8", "best"] = Field(
        "best",
        description=(
            "fp32, fp16 or int8, or 'best': the fastest the hardware runs without calibration data "
            "(TensorRT: fp16 where fast, int8 only when a calibration cache or Q/DQ model is set; "
            "ONNX Runtime: fp32). What 'best' chose is logged and published."
        ),
    )
    onnxruntime: OnnxRuntimeConfig = Field(default_factory=OnnxRuntimeConfig, description="ONNX Runtime options.")
    tensorrt: TensorRtConfig = Field(default_factory=TensorRtConfig, description="TensorRT options.")


# --------------------------------------------------------------------------- detection
class DetectConfig(Strict):
    score_threshold: float = Field(0.35, ge=0, le=1, description="Minimum score of a detection.")
    class_thresholds: Dict[str, float] = Field(
        default_factory=dict, description="Per-class score thresholds, by label (override score_threshold)."
    )
    classes: Optional[List[str]] = Field(None, description="Keep only these labels (default: all).")
    iou_threshold: float = Field(0.5, gt=0, le=1, description="NMS IoU threshold.")
    class_agnostic_nms: bool = Field(False, description="Suppress overlapping boxes across classes.")
    max_detections: int = Field(100, ge=1, le=10000, description="Keep at most this many detections a frame.")

    @field_validator("class_thresholds")
    @classmethod
    def _thresholds(cls, v: Dict[str, float]) -> Dict[str, float]:
        bad = [k for k, t in v.items() if not 0 <= t <= 1]
        if bad:
            raise ValueError(f"thresholds must be between 0 and 1: {', '.join(bad)}")
        return v


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


class HealthConfig(Strict):
    ready_timeout_s: float = Field(
        30.0, gt=0, description="Report ready after this long even if cameras are still connecting."
    )
    worker_stall_s: float = Field(
        10.0, gt=0, description="A worker without progress for this long stops the systemd watchdog."
    )
    status_interval_s: float = Field(5.0, gt=0, description="Update systemd STATUS= this often.")


def _default_device(hostname: str) -> str:
    """The host name made a valid NAME_RE device name (a long or odd host name must not fail validation)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", hostname).lstrip("_.-")[:64] or "edge"


def _default_state_dir() -> Path:
    env = os.environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
    if env:
        return Path(env.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "edge-detector"


class Config(Strict):
    """The whole configuration file."""

    version: Literal[1] = Field(1, description="Configuration format version.")
    device: str = Field(
        default_factory=lambda: _default_device(socket.gethostname()),
        pattern=NAME_RE,
        description="This device's name in topics and payloads (default: host name).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Engines, timing cache and outbox (default: $STATE_DIRECTORY or ~/.local/state).",
    )
    sinks: List[Literal["mqtt", "stdout"]] = Field(["mqtt"], min_length=1, description="Where results go.")
    cameras: List[CameraConfig] = Field(min_length=1, description="Video sources.")
    model: ModelConfig = Field(description="The detector.")
    backend: BackendConfig = Field(default_factory=BackendConfig, description="Inference backend.")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Detection filtering.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection and topics.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Liveness and systemd.")

    @field_validator("cameras")
    @classmethod
    def _unique(cls, v: List[CameraConfig]) -> List[CameraConfig]:
        seen = set()
        for i, cam in enumerate(v):
            if cam.name in seen:
                raise _located(f"camera name {cam.name!r} is used twice", i, "name")
            seen.add(cam.name)
        return v

    @model_validator(mode="after")
    def _known_labels(self) -> Config:
        labels = COCO_LABELS if self.model.labels == "coco" else self.model.labels
        if not isinstance(labels, list):
            return self  # a labels file is checked when the model is loaded
        known = set(labels)
        named: List[Tuple[str, Tuple[Union[str, int], ...]]] = []
        named += [(n, ("detect", "classes", i)) for i, n in enumerate(self.detect.classes or [])]
        named += [(n, ("detect", "class_thresholds", n)) for n in self.detect.class_thresholds]
        for c, cam in enumerate(self.cameras):
            named += [(n, ("cameras", c, "classes", i)) for i, n in enumerate(cam.classes or [])]
        unknown = [(n, loc) for n, loc in named if n not in known]
        if unknown:
            names = ", ".join(sorted({n for n, _ in unknown}))
            raise _located(f"unknown class labels: {names} (see model.labels)", *unknown[0][1])
        return self

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, v: List[str]) -> List[str]:
        if len(set(v)) != len(v):
            raise ValueError("a sink is listed twice")
        return v
