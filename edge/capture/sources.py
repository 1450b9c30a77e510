"""The source part of each pipeline, per ``source.kind``; see :mod:`edge.capture.pipelines`.

User values (paths, URLs, device names, credentials) only ever become element
properties, so spaces, quotes or ``!`` in them can neither break nor extend a pipeline.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from edge.capture.elements import (
    DEPAYLOADERS,
    HW_CONVERT,
    HW_JPEG,
    PARSERS,
    SW_DECODERS,
    DecoderPlan,
    caps,
    fraction,
    link_chain,
    make,
    require,
)
from edge.capture.gst import gst_modules
from edge.capture.pipelines import AttemptError, Builder, VideoLinker, media_type, pad_structure
from edge.capture.redact import redact_url, split_credentials
from edge.config.model import (
    CameraConfig,
    CsiSource,
    FileSource,
    PipelineSource,
    RtspSource,
    TestSource,
    V4l2Source,
)
from edge.config.secrets import reveal
from edge.errors import ConfigError, HardwareError, SourceError

Chain = Tuple[List[Any], bool]  # (elements, whether the last one links itself to the head later)
_CODECS = {"video/x-h264": "h264", "video/x-h265": "h265", "H264": "h264", "H265": "h265"}


def _decodebin(plan: DecoderPlan, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> Any:
    dec = make("decodebin")
    if not plan.hardware and dec.find_property("force-sw-decoders") is not None:
        dec.set_property("force-sw-decoders", True)
    dec.connect("pad-added", VideoLinker(pipeline, head, lambda pad: ([], False), linkers))
    return dec


def _link_head(pipeline: Any, chain: List[Any], head: Any, deferred: bool = False) -> None:
    link_chain(pipeline, chain)
    if not deferred and not chain[-1].link(head):
        raise SourceError("cannot link the source to the conversion", "check the source's caps")


class FileBuilder(Builder):
    live = False

    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        super().__init__(camera, plan)
        self.cfg: FileSource = camera.source  # type: ignore[assignment]
        self.loop = self.cfg.loop
        self.sync = self.drop = self.cfg.realtime

    def _where(self) -> str:
        return f"file {self.camera.source.path}"  # type: ignore[union-attr]

    def elements(self) -> List[str]:
        return ["filesrc", "parsebin", "decodebin", *PARSERS.values()]

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        if not self.cfg.path.is_file():
            raise AttemptError(f"file {self.cfg.path} does not exist")
        src = make("filesrc", location=str(self.cfg.path))
        parse = make("parsebin")

        def decode(pad: Any) -> Chain:
            return self._decode(pipeline, head, pad, linkers)

        parse.connect("pad-added", VideoLinker(pipeline, head, decode, linkers))
        link_chain(pipeline, [src, parse])

    def _decode(self, pipeline: Any, head: Any, pad: Any, linkers: List[VideoLinker]) -> Chain:
        name = media_type(pad)
        if name == "video/x-raw":
            return [], False
        codec = _CODECS.get(name)
        if codec is not None:
            return [make(PARSERS[codec]), make(self.plan.decoder(codec))], False
        return [_decodebin(self.plan, pipeline, head, linkers)], True


class TestBuilder(Builder):
    def _where(self) -> str:
        return f"videotestsrc {self.camera.source.pattern}"  # type: ignore[union-attr]

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        cfg: TestSource = self.camera.source  # type: ignore[assignment]
        src = make("videotestsrc", is_live=True)
        gst_modules().Gst.util_set_object_arg(src, "pattern", cfg.pattern)
        size = f"video/x-raw,width={cfg.width},height={cfg.height},framerate={fraction(cfg.fps)}"
        _link_head(pipeline, [src, make("capsfilter", caps=caps(size))], head)


class RtspBuilder(Builder):
    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        self.cfg: RtspSource = camera.source  # type: ignore[assignment]
        super().__init__(camera, plan)

    def _where(self) -> str:
        return redact_url(self.cfg.url)

    def _credentials(self) -> Tuple[Optional[str], Optional[str]]:
        """Read on every attempt, so a rotated secret is picked up without a restart."""
        split = split_credentials(self.cfg.url)
        password = reveal(self.cfg.password, f"camera {self.camera.name} password") or split.password
        self.redact.add(password)
        return self.cfg.username or split.username, password

    def elements(self) -> List[str]:
        codecs = ["h264", "h265"] if self.cfg.codec == "auto" else [self.cfg.codec]
        return ["rtspsrc", *(DEPAYLOADERS[c] for c in codecs), *(PARSERS[c] for c in codecs)]

    def check(self) -> None:
        self._credentials()  # a missing secret is a configuration error: say so at start-up

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        try:
            user, password = self._credentials()
        except ConfigError as exc:
            raise AttemptError(str(exc)) from None
        src = make(
            "rtspsrc",
            location=split_credentials(self.cfg.url).location,
            latency=self.cfg.latency_ms,
            tcp_timeout=int(self.cfg.tcp_timeout_s * 1_000_000),
            drop_on_latency=True,
        )
        if self.cfg.transport != "auto":
            gst_modules().Gst.util_set_object_arg(src, "protocols", self.cfg.transport)
        if user:
            src.set_property("user-id", user)
        if password:
            src.set_property("user-pw", password)
        src.connect("select-stream", lambda _src, _num, stream_caps: self._wanted(stream_caps))
        src.connect("pad-added", VideoLinker(pipeline, head, self._depay, linkers))
        pipeline.add(src)

    @staticmethod
    def _wanted(stream_caps: Any) -> bool:
        return bool(stream_caps.get_size()) and stream_caps.get_structure(0).get_string("media") == "video"

    def _depay(self, pad: Any) -> Chain:
        s = pad_structure(pad)
        encoding = (s.get_string("encoding-name") or "?").upper() if s is not None else "?"
        codec = _CODECS.get(encoding)
        if codec is None:
            raise SourceError(f"the stream's video codec {encoding} is not supported", "send H.264 or H.265")
        if self.cfg.codec not in ("auto", codec):
            raise SourceError(f"the stream is {encoding} but source.codec is {self.cfg.codec}", "set codec: auto")
        return [make(DEPAYLOADERS[codec]), make(PARSERS[codec]), make(self.plan.decoder(codec))], False


class V4l2Builder(Builder):
    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        self.cfg: V4l2Source = camera.source  # type: ignore[assignment]
        super().__init__(camera, plan)

    def _where(self) -> str:
        return f"V4L2 device {self.cfg.device}"

    def elements(self) -> List[str]:
        return ["v4l2src", "jpegdec", "decodebin"]

    def _caps(self, media: str) -> str:
        c = self.cfg
        fields = [media]
        fields += [f"width={c.width}"] if c.width else []
        fields += [f"height={c.height}"] if c.height else []
        fields += [f"framerate={fraction(c.fps)}"] if c.fps else []
        return ",".join(fields)

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        if not os.path.exists(self.cfg.device):
            raise AttemptError(f"V4L2 device {self.cfg.device} does not exist (camera unplugged?)")
        chain = [make("v4l2src", device=self.cfg.device)]
        if self.cfg.format == "mjpeg":
            jpeg = HW_JPEG if self.plan.hardware and self.plan.find(HW_JPEG) else "jpegdec"
            chain += [make("capsfilter", caps=caps(self._caps("image/jpeg"))), make(jpeg)]
        elif self.cfg.format == "yuyv":
            chain += [make("capsfilter", caps=caps(self._caps("video/x-raw,format=YUY2")))]
        else:
            either = f"{self._caps('video/x-raw')};{self._caps('image/jpeg')}"
            chain += [make("capsfilter", caps=caps(either)), _decodebin(self.plan, pipeline, head, linkers)]
        _link_head(pipeline, chain, head, deferred=self.cfg.format == "auto")


class CsiBuilder(Builder):
    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        self.cfg: CsiSource = camera.source  # type: ignore[assignment]
        # nvvidconv below already leaves NVMM: the tail only packs BGRx into BGR.
        super().__init__(camera, DecoderPlan(hardware=False, find=plan.find))

    def _where(self) -> str:
        return f"CSI sensor {self.cfg.sensor_id}"

    def check(self) -> None:
        for name in ("nvarguscamerasrc", HW_CONVERT):
            if not self.plan.find(name):
                raise HardwareError(f"CSI cameras need the {name} element, which is not installed", "run on a Jetson")

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        c = self.cfg
        src = make("nvarguscamerasrc", sensor_id=c.sensor_id)
        if c.sensor_mode is not None:
            src.set_property("sensor-mode", c.sensor_mode)
        nvmm = f"video/x-raw(memory:NVMM),width={c.width},height={c.height},framerate={fraction(c.fps)}"
        size = self.camera.frame_size
        out = "video/x-raw,format=BGRx" + ("" if size is None else f",width={size[0]},height={size[1]}")
        chain = [src, make("capsfilter", caps=caps(nvmm)), make(HW_CONVERT, flip_method=c.flip_method)]
        _link_head(pipeline, [*chain, make("capsfilter", caps=caps(out))], head)


class OverrideBuilder(Builder):
    """The expert ``pipeline:`` description, parsed by GStreamer into a bin (validated at start-up)."""

    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        self.cfg: PipelineSource = camera.source  # type: ignore[assignment]
        super().__init__(camera, plan)
        self.live = self.cfg.live

    def _where(self) -> str:
        return "custom pipeline"

    def _parse(self) -> Any:
        m = gst_modules()
        try:
            bin_ = m.Gst.parse_bin_from_description(self.cfg.description, True)
        except m.GLib.Error as exc:
            raise SourceError(
                f"camera {self.camera.name}: source.description does not parse: {exc.message}",
                "fix the gst-launch syntax, write trailing caps as `capsfilter caps=...`, leave out the appsink",
            ) from None
        if bin_.get_static_pad("src") is None:
            raise SourceError(
                f"camera {self.camera.name}: source.description has no unconnected video output",
                "end the description with the element whose output should be captured",
            )
        return bin_

    def check(self) -> None:
        self._parse().set_state(gst_modules().Gst.State.NULL)

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        _link_head(pipeline, [self._parse()], head)


_BUILDERS = {
    "file": FileBuilder,
    "test": TestBuilder,
    "rtsp": RtspBuilder,
    "v4l2": V4l2Builder,
    "csi": CsiBuilder,
    "pipeline": OverrideBuilder,
}


def builder_for(camera: CameraConfig, plan: DecoderPlan) -> Builder:
    """The checked builder for ``camera``; raises EdgeError for what can never work."""
    builder = _BUILDERS[camera.source.kind](camera, plan)
    scale = ["videoscale"] if camera.frame_size else []
    require([*builder.elements(), "videoconvert", "capsfilter", "appsink", *scale], plan.find)
    if not plan.hardware and camera.source.kind in ("file", "rtsp"):
        for codec in ("h264", "h265"):
            if not any(plan.find(n) for n in SW_DECODERS[codec]):
                raise SourceError(f"no software {codec.upper()} decoder is installed", "install gstreamer1.0-libav")
    builder.check()
    return builder
