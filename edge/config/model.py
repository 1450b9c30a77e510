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

from pydantic import Field, field_validator, model_validator
from typing_extensions import Literal

from edge.config.base import NAME_RE, Secret, SecretRef, Strict, _located, _must_exist
from edge.config.labels import COCO_LABELS
from edge.config.mqtt import MqttConfig, OutboxConfig, TlsConfig
from edge.config.sources import (
    CameraConfig,
    CsiSource,
    FileSource,
    PipelineSource,
    ReconnectConfig,
    RtspSource,
    Source,
    TestSource,
    V4l2Source,
)

__all__ = [
    "NAME_RE", "BackendConfig", "CameraConfig", "Config", "CsiSource", "DetectConfig", "FileSource",
    "HealthConfig", "InputConfig", "ModelConfig", "MqttConfig", "OnnxRuntimeConfig", "OutboxConfig",
    "PipelineSource", "ReconnectConfig", "RtspSource", "Secret", "SecretRef", "Source", "Strict",
    "TensorRtConfig", "TestSource", "TlsConfig", "V4l2Source",
]


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
