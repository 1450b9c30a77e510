"""Capture: GStreamer sources that deliver BGR frames and reconnect forever.

``open_source`` is the only entry point the daemon needs. GStreamer (``gi``) is imported
only when a source is opened, so this package imports on any machine.
"""

from __future__ import annotations

from typing import Optional

from edge.capture.base import Deliver, Source, SourceState, SourceStats
from edge.config.model import CameraConfig
from edge.frames import FrameRing

__all__ = ["Deliver", "Source", "SourceState", "SourceStats", "open_source"]


def open_source(camera: CameraConfig, deliver: Deliver, ring: Optional[FrameRing] = None) -> Source:
    """A stopped source for ``camera``; call ``start()`` to begin capturing.

    ``deliver(frame)`` is called from the source's thread for every frame. With ``ring``
    each frame is copied once into a ring buffer; without, the frame is a view of the
    mapped GStreamer buffer. Either way ``frame.release()`` gives the memory back.

    Raises :class:`~edge.errors.HardwareError` when GStreamer/PyGObject or a needed
    hardware element is missing, :class:`~edge.errors.SourceError` for a source that can
    never work (missing plugin, bad ``pipeline:`` description) and
    :class:`~edge.errors.ConfigError` for an unreadable secret. Everything that may fix
    itself (network, a camera unplugged) is retried by the source instead.
    """
    from edge.capture.elements import decoder_plan
    from edge.capture.gst import gst_modules
    from edge.capture.sources import builder_for
    from edge.capture.supervisor import GstSource

    gst_modules()
    builder = builder_for(camera, decoder_plan(camera.decoder))
    return GstSource(camera, deliver, ring, builder)
