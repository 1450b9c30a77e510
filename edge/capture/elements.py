"""Elements, the decoder choice, and the common tail of every capture pipeline.

Pipelines are assembled from element factories and typed properties, never from a
gst-launch string with user values pasted in. Decoding uses the Jetson hardware decoder
(``nvv4l2decoder``) and converter (``nvvidconv``) when the element registry has them, else
software decoders; the choice is logged once per process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Dict, Optional, Sequence, Set, Tuple

from edge.capture.gst import TAIL_FORMATS, gst_modules
from edge.errors import HardwareError, SourceError

log = logging.getLogger(__name__)

# Where each element comes from, for "install X" hints.
_PACKAGES: Dict[str, str] = {
    "rtspsrc": "gstreamer1.0-plugins-good",
    "rtph264depay": "gstreamer1.0-plugins-good",
    "rtph265depay": "gstreamer1.0-plugins-good",
    "v4l2src": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
    "h265parse": "gstreamer1.0-plugins-bad",
    "avdec_h264": "gstreamer1.0-libav",
    "avdec_h265": "gstreamer1.0-libav",
    "nvv4l2decoder": "JetPack's nvidia-l4t-gstreamer",
    "nvvidconv": "JetPack's nvidia-l4t-gstreamer",
    "nvarguscamerasrc": "JetPack's nvidia-l4t-gstreamer (CSI cameras exist only on Jetson)",
    "nvjpegdec": "JetPack's nvidia-l4t-gstreamer",
}
_BASE = "gstreamer1.0-plugins-base"

HW_DECODER = "nvv4l2decoder"
HW_CONVERT = "nvvidconv"
HW_JPEG = "nvjpegdec"
SW_DECODERS: Dict[str, Tuple[str, ...]] = {"h264": ("avdec_h264", "openh264dec"), "h265": ("avdec_h265", "libde265dec")}
PARSERS = {"h264": "h264parse", "h265": "h265parse"}
DEPAYLOADERS = {"h264": "rtph264depay", "h265": "rtph265depay"}

Finder = Callable[[str], bool]


def element_exists(name: str) -> bool:
    """Whether the element registry has factory ``name``."""
    return gst_modules().Gst.ElementFactory.find(name) is not None


def missing_element(name: str) -> SourceError:
    return SourceError(
        f"GStreamer element {name!r} is not installed",
        f"install {_PACKAGES.get(name, _BASE)} (tools/setup.sh)",
    )


def require(names: Sequence[str], find: Finder = element_exists) -> None:
    for name in names:
        if not find(name):
            raise missing_element(name)


def make(factory: str, **props: Any) -> Any:
    """A new element with typed properties (names use ``_`` for ``-``)."""
    element = gst_modules().Gst.ElementFactory.make(factory, None)
    if element is None:
        raise missing_element(factory)
    for key, value in props.items():
        element.set_property(key.replace("_", "-"), value)
    return element


def caps(text: str) -> Any:
    """Caps from a description built only from constants and numbers (never user text)."""
    return gst_modules().Gst.Caps.from_string(text)


def fraction(fps: float) -> str:
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


# --------------------------------------------------------------------------- decoder choice
@dataclass(frozen=True)
class DecoderPlan:
    """Hardware (nvv4l2decoder + nvvidconv) or software decoding for one camera."""

    hardware: bool
    find: Finder = element_exists

    def decoder(self, codec: str) -> str:
        if self.hardware:
            return HW_DECODER
        for name in SW_DECODERS[codec]:
            if self.find(name):
                return name
        raise missing_element(SW_DECODERS[codec][0])

    def describe(self) -> str:
        if self.hardware:
            return f"hardware ({HW_DECODER} + {HW_CONVERT})"
        return f"software (avdec; {HW_DECODER} not in the element registry or not wanted)"


_logged: Set[Tuple[str, bool]] = set()
_logged_lock = threading.Lock()


def decoder_plan(policy: str, find: Finder = element_exists) -> DecoderPlan:
    """Choose decoding for ``policy`` (auto, hardware, software) from the element registry."""
    available = find(HW_DECODER) and find(HW_CONVERT)
    if policy == "hardware" and not available:
        raise HardwareError(
            f"decoder: hardware asked for, but {HW_DECODER}/{HW_CONVERT} are not in the GStreamer registry",
            "use decoder: auto or software on machines without the Jetson multimedia stack",
        )
    plan = DecoderPlan(hardware=available and policy != "software", find=find)
    with _logged_lock:
        key = (policy, plan.hardware)
        first = key not in _logged
        _logged.add(key)
    if first:
        log.info("video decoding (decoder: %s): %s", policy, plan.describe())
    return plan


# --------------------------------------------------------------------------- tail
def add_tail(
    pipeline: Any,
    plan: DecoderPlan,
    frame_size: Optional[Tuple[int, int]],
    sync: bool,
    drop: bool,
) -> Tuple[Any, Any]:
    """Add ``[nvvidconv] → convert/scale → BGR caps → appsink`` to ``pipeline``.

    Returns (first element, appsink): link the decoded video into the first element.
    """
    size = "" if frame_size is None else f",width={int(frame_size[0])},height={int(frame_size[1])}"
    chain = []
    if plan.hardware:
        # nvvidconv takes NVMM and system memory, scales, and writes BGRx; videoconvert packs BGR.
        chain += [make(HW_CONVERT), make("capsfilter", caps=caps("video/x-raw,format=BGRx" + size))]
        chain += [make("videoconvert")]
    else:
        if frame_size is not None:
            chain.append(make("videoscale"))
        chain.append(make("videoconvert"))
    formats = ", ".join(TAIL_FORMATS)
    chain.append(make("capsfilter", caps=caps(f"video/x-raw,format=(string){{ {formats} }}" + size)))
    sink = make("appsink", sync=sync, max_buffers=1, drop=drop, emit_signals=False)
    sink.set_property("enable-last-sample", False)
    chain.append(sink)
    link_chain(pipeline, chain)
    return chain[0], sink


def link_chain(pipeline: Any, chain: Sequence[Any], sync_state: bool = False) -> None:
    """Add the elements to ``pipeline`` and link them in order.

    With ``sync_state`` (elements added to a running pipeline), each element takes the
    pipeline's state, downstream first so data never meets a stopped element.
    """
    for element in chain:
        pipeline.add(element)
    for up, down in zip(chain, chain[1:]):
        if not up.link(down):
            raise SourceError(
                f"cannot link {up.get_factory().get_name()} to {down.get_factory().get_name()}",
                "report this as a bug",
            )
    if sync_state:
        for element in reversed(chain):
            element.sync_state_with_parent()
