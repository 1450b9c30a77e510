"""Configuration of cameras: the source kinds, the reconnect policy, per-camera overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

from pydantic import Field, field_validator
from typing_extensions import Annotated, Literal

from edge.config.base import NAME_RE, Secret, Strict, _must_exist


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
