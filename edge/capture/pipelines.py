"""Element graphs per source kind: file, test, rtsp, v4l2, csi and the expert ``pipeline``.

Each :class:`Builder` checks once what can never work (missing elements, a bad pipeline
override) and raises; :meth:`Builder.build` then makes a fresh pipeline for every
attempt, raising :class:`AttemptError` for what may fix itself (a device not plugged in).
Every graph ends in the same tail (:func:`edge.capture.elements.add_tail`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from edge.capture.elements import DecoderPlan, add_tail, link_chain, make
from edge.capture.gst import gst_modules
from edge.capture.redact import Redactor
from edge.config.model import CameraConfig
from edge.errors import SourceError

ERROR_MESSAGE = "edge-capture-error"  # application message our callbacks post on the bus


class AttemptError(Exception):
    """This attempt cannot start (device missing, secret unreadable); the supervisor retries."""


def post_error(element: Any, reason: str) -> None:
    """Report a problem found in a streaming-thread callback to the supervisor."""
    Gst = gst_modules().Gst
    structure = Gst.Structure.new_empty(ERROR_MESSAGE)
    structure.set_value("reason", reason)
    element.post_message(Gst.Message.new_application(element, structure))


def pad_structure(pad: Any) -> Any:
    pad_caps = pad.get_current_caps() or pad.query_caps(None)
    if pad_caps is None or pad_caps.get_size() == 0:
        return None
    return pad_caps.get_structure(0)


def media_type(pad: Any) -> str:
    s = pad_structure(pad)
    return "" if s is None else str(s.get_name())


def is_video(pad: Any) -> bool:
    s = pad_structure(pad)
    if s is None:
        return False
    name = str(s.get_name())
    if name == "application/x-rtp":
        return s.get_string("media") == "video"
    return name.startswith(("video/", "image/"))


class VideoLinker:
    """``pad-added`` handler: the first video pad goes into ``head`` through ``chain_for(pad)``;
    any other pad ends in a fakesink.

    ``chain_for`` returns the elements in between (possibly none) and whether the last of
    them links itself to ``head`` later (a decodebin, whose output pad appears at run time).
    """

    def __init__(
        self,
        pipeline: Any,
        head: Any,
        chain_for: Callable[[Any], Tuple[List[Any], bool]],
        registry: List[VideoLinker],
    ) -> None:
        self._pipeline: Any = pipeline
        self._head: Any = head
        self._chain_for: Optional[Callable[[Any], Tuple[List[Any], bool]]] = chain_for
        self._lock = threading.Lock()
        self._linked = False
        registry.append(self)  # closed with the graph: see close()

    def close(self) -> None:
        """Drop the references to the pipeline (they would form a cycle through its signals)."""
        with self._lock:
            self._pipeline = self._head = self._chain_for = None

    def __call__(self, element: Any, pad: Any) -> None:
        with self._lock:
            chain_for, pipeline, head = self._chain_for, self._pipeline, self._head
            if chain_for is None:
                return  # the graph is being torn down
            take = not self._linked and is_video(pad)
            self._linked = self._linked or take
        try:
            if take:
                chain, deferred = chain_for(pad)
                if chain:
                    link_chain(pipeline, chain, sync_state=True)
                    if not deferred and not chain[-1].link(head):
                        raise SourceError(f"cannot convert the decoded {media_type(pad)}", "check the stream")
                self._link(pad, chain[0] if chain else head)
            else:
                sink = make("fakesink", sync=False)
                sink.set_property("async", False)
                link_chain(pipeline, [sink], sync_state=True)
                self._link(pad, sink)
        except SourceError as exc:
            post_error(element, str(exc))

    @staticmethod
    def _link(pad: Any, target: Any) -> None:
        Gst = gst_modules().Gst
        if pad.link(target.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
            raise SourceError(f"cannot link the source's {media_type(pad)} stream", "check the stream's format")


@dataclass
class Graph:
    pipeline: Any
    appsink: Any
    live: bool  # end-of-stream means the source went away: reconnect
    loop: bool  # end-of-stream means seek back to the start
    linkers: List[VideoLinker] = field(default_factory=list)

    def close(self) -> None:
        """Call after the pipeline is in NULL: breaks reference cycles so it is freed at once."""
        for linker in self.linkers:
            linker.close()
        self.linkers.clear()


class Builder:
    """Builds one camera's pipeline; subclasses add the source part in :meth:`_source`."""

    live = True
    loop = False
    sync = False  # appsink paces to the clock (only for real-time file playback)
    drop = True  # appsink keeps only the newest frame

    def __init__(self, camera: CameraConfig, plan: DecoderPlan) -> None:
        self.camera = camera
        self.plan = plan
        self.redact = Redactor()  # scrubs every secret this builder has used from text
        self.where = self._where()

    def _where(self) -> str:
        return self.camera.source.kind

    def elements(self) -> List[str]:
        """Element factories this source needs at the least (checked once at start-up)."""
        return []

    def check(self) -> None:
        """Raise :class:`~edge.errors.EdgeError` for what can never work; called once."""

    def build(self) -> Graph:
        """A fresh pipeline for one attempt; :meth:`Graph.close` it after setting it to NULL."""
        Gst = gst_modules().Gst
        pipeline = Gst.Pipeline.new(f"capture-{self.camera.name}")
        head, sink = add_tail(pipeline, self.plan, self.camera.frame_size, self.sync, self.drop)
        graph = Graph(pipeline, sink, self.live, self.loop)
        self._source(pipeline, head, graph.linkers)
        return graph

    def _source(self, pipeline: Any, head: Any, linkers: List[VideoLinker]) -> None:
        raise NotImplementedError
