"""GStreamer plumbing: importing and initialising it once, and mapping buffers without a copy.

PyGObject's ``Gst.Buffer.map()`` returns a fresh ``bytes`` copy on every access, so frames
are mapped here through ctypes instead: ``gst_buffer_map`` on the buffer's C pointer gives
a stable address that numpy wraps as a (row-strided) view. A :class:`MappedBuffer` holds
its own reference and mapping until :meth:`MappedBuffer.release`; every map is unmapped
exactly once (see :data:`MAP_COUNTS`).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional, Tuple

import numpy as np

from edge.errors import HardwareError, SourceError

_INSTALL_HINT = (
    "install GStreamer and PyGObject: tools/setup.sh, or apt-get install gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0 and pip install 'pygobject<3.51'"
)

_init_lock = threading.Lock()
_modules: Optional[SimpleNamespace] = None


def gst_modules() -> SimpleNamespace:
    """``Gst``, ``GstApp``, ``GstVideo`` and ``GLib``, initialised once per process.

    Raises :class:`HardwareError` naming what to install when GStreamer or PyGObject is missing.
    """
    global _modules
    with _init_lock:
        if _modules is not None:
            return _modules
        try:
            import gi

            for ns in ("Gst", "GstApp", "GstVideo"):
                gi.require_version(ns, "1.0")
            from gi.repository import GLib, Gst, GstApp, GstVideo
        except (ImportError, ValueError) as exc:
            raise HardwareError(f"GStreamer is not available from Python: {exc}", _INSTALL_HINT) from None
        ok, _ = Gst.init_check(None)
        if not ok:
            raise HardwareError("GStreamer failed to initialise", _INSTALL_HINT)
        _lib()  # fail now, not on the first frame
        _modules = SimpleNamespace(Gst=Gst, GstApp=GstApp, GstVideo=GstVideo, GLib=GLib)
        return _modules


# --------------------------------------------------------------------------- ctypes
_GST_MAP_READ = 1
# What the capture pipeline hands to Python. YUV frames are converted to BGR with OpenCV
# while being copied out (about 3x cheaper than GStreamer's videoconvert to BGR).
TAIL_FORMATS = ("I420", "NV12", "BGR")
_MAX_PLANES = 4


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("memory", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("maxsize", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p * 4),
        ("_gst_reserved", ctypes.c_void_p * 4),
    ]


class _VideoMeta(ctypes.Structure):
    """The stable head of ``GstVideoMeta`` (unchanged since GStreamer 1.0)."""

    _fields_ = [
        ("meta_flags", ctypes.c_int),
        ("meta_info", ctypes.c_void_p),
        ("buffer", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("format", ctypes.c_int),
        ("id", ctypes.c_int),
        ("width", ctypes.c_uint),
        ("height", ctypes.c_uint),
        ("n_planes", ctypes.c_uint),
        ("offset", ctypes.c_size_t * _MAX_PLANES),
        ("stride", ctypes.c_int * _MAX_PLANES),
    ]


_libs: Optional[Tuple[Any, Any]] = None


def _load(name: str) -> Any:
    try:
        return ctypes.CDLL(name)
    except OSError as exc:
        raise HardwareError(f"cannot load {name}: {exc}", _INSTALL_HINT) from None


def _lib() -> Tuple[Any, Any]:
    global _libs
    if _libs is None:
        gst = _load("libgstreamer-1.0.so.0")
        video = _load("libgstvideo-1.0.so.0")
        gst.gst_buffer_map.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo), ctypes.c_int]
        gst.gst_buffer_map.restype = ctypes.c_int
        gst.gst_buffer_unmap.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo)]
        gst.gst_buffer_unmap.restype = None
        gst.gst_mini_object_ref.argtypes = [ctypes.c_void_p]
        gst.gst_mini_object_ref.restype = ctypes.c_void_p
        gst.gst_mini_object_unref.argtypes = [ctypes.c_void_p]
        gst.gst_mini_object_unref.restype = None
        video.gst_buffer_get_video_meta.argtypes = [ctypes.c_void_p]
        video.gst_buffer_get_video_meta.restype = ctypes.POINTER(_VideoMeta)
        _libs = (gst, video)
    return _libs


def buffer_pointer(buffer: Any) -> int:
    """The ``GstBuffer*`` behind a PyGObject ``Gst.Buffer``.

    PyGObject hashes boxed values by their C pointer (``pyg_boxed_hash``); nothing else in
    its public API exposes it.
    """
    return hash(buffer)


class MapCounts:
    """Maps and unmaps made so far (a balance check for tests and stats)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mapped = 0
        self.unmapped = 0

    def add(self, mapped: int = 0, unmapped: int = 0) -> None:
        with self._lock:
            self.mapped += mapped
            self.unmapped += unmapped

    @property
    def outstanding(self) -> int:
        return self.mapped - self.unmapped


MAP_COUNTS = MapCounts()


class MappedBuffer:
    """A GstBuffer we hold a reference to, mapped for reading until :meth:`release`."""

    __slots__ = ("__weakref__", "_info", "_lock", "_ptr", "address", "size")

    def __init__(self, buffer_ptr: int) -> None:
        gst, _ = _lib()
        self._lock = threading.Lock()
        self._info = _MapInfo()
        self._ptr: Optional[int] = gst.gst_mini_object_ref(buffer_ptr)
        if not gst.gst_buffer_map(self._ptr, ctypes.byref(self._info), _GST_MAP_READ):
            gst.gst_mini_object_unref(self._ptr)
            self._ptr = None
            raise SourceError("could not map a video buffer for reading", "report this as a bug")
        MAP_COUNTS.add(mapped=1)
        self.address = int(self._info.data or 0)
        self.size = int(self._info.size)

    def release(self) -> None:
        """Unmap and drop our reference; safe to call more than once, from any thread."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            return
        gst, _ = _lib()
        gst.gst_buffer_unmap(ptr, ctypes.byref(self._info))
        gst.gst_mini_object_unref(ptr)
        MAP_COUNTS.add(unmapped=1)


@dataclass(frozen=True)
class Layout:
    """Where an image lies in a buffer: packed BGR, or the planes of I420/NV12.

    ``stride``/``offset`` describe the first (or only) plane; ``planes`` holds
    ``(offset, stride)`` of every plane for the YUV formats.
    """

    width: int
    height: int
    stride: int
    offset: int = 0
    format: str = "BGR"
    planes: Tuple[Tuple[int, int], ...] = ()

    @property
    def nbytes(self) -> int:
        return self.offset + self.stride * (self.height - 1) + self.width * 3


def caps_layout(caps: Any) -> Layout:
    """The default layout of BGR frames of ``caps`` (rows padded to 4 bytes)."""
    GstVideo = gst_modules().GstVideo
    try:
        info = GstVideo.VideoInfo.new_from_caps(caps)
    except AttributeError:  # GStreamer < 1.20
        info = GstVideo.VideoInfo()
        if not info.from_caps(caps):
            info = None
    formats = {GstVideo.VideoFormat.BGR: "BGR", GstVideo.VideoFormat.I420: "I420", GstVideo.VideoFormat.NV12: "NV12"}
    fmt = formats.get(info.finfo.format) if info is not None else None
    if info is None or fmt is None:
        raise SourceError(f"unexpected frame caps {caps.to_string()}", "the capture pipeline must produce "
                          + ", ".join(TAIL_FORMATS))
    planes = tuple((int(info.offset[i]), int(info.stride[i])) for i in range(int(info.finfo.n_planes)))
    return Layout(int(info.width), int(info.height), int(info.stride[0]), int(info.offset[0]), fmt, planes)


def buffer_layout(buffer_ptr: int, default: Layout) -> Layout:
    """The layout from the buffer's GstVideoMeta when it has one, else ``default``."""
    _, video = _lib()
    meta = video.gst_buffer_get_video_meta(buffer_ptr)
    if not meta:
        return default
    m = meta.contents
    planes = tuple((int(m.offset[i]), int(m.stride[i])) for i in range(min(int(m.n_planes), _MAX_PLANES)))
    return Layout(int(m.width), int(m.height), int(m.stride[0]), int(m.offset[0]), default.format, planes)


def bgr_view(mapped: MappedBuffer, layout: Layout) -> np.ndarray:
    """A read-only H×W×3 uint8 view of the mapped memory, honouring the row stride."""
    if layout.stride < layout.width * 3 or mapped.size < layout.nbytes or not mapped.address:
        raise SourceError(
            f"video buffer of {mapped.size} bytes does not hold {layout.width}x{layout.height} BGR "
            f"with stride {layout.stride}",
            "report this as a bug with the source's caps",
        )
    raw = (ctypes.c_uint8 * mapped.size).from_address(mapped.address)
    view = np.ndarray(
        shape=(layout.height, layout.width, 3),
        dtype=np.uint8,
        buffer=raw,  # type: ignore[arg-type]  # ctypes arrays export the buffer protocol
        offset=layout.offset,
        strides=(layout.stride, 3, 1),
    )
    view.flags.writeable = False
    return view
