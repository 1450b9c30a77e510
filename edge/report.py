"""What the daemon reports: the STATUS= line, the retained status and the periodic stats."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict

from edge import __version__
from edge.health.stats import system_stats

if TYPE_CHECKING:
    from edge.daemon import Daemon


def camera_stats(d: Daemon) -> Dict[str, Dict[str, Any]]:
    """Per camera; ``frames`` = ``published`` + ``dropped_unread`` + ``skipped`` once drained."""
    pipeline = d.running
    rates = pipeline.processed.rates(d.sources)
    mailbox = d.mailbox.counters()
    out = {}
    for name, src in {**d.stopped_sources, **d.sources}.items():
        _received, unread = mailbox.get(name, (0, 0))
        cam = src.stats.as_dict()
        cam.update(
            fps=rates.get(name, 0.0),
            published=pipeline.published_by_camera.get(name, 0),
            dropped=unread + src.stats.dropped,
            dropped_unread=unread,
            dropped_no_buffer=src.stats.dropped,
            skipped=pipeline.skipped.get(name, 0),
            where=src.where,
        )
        out[name] = cam
    return out


def status_line(d: Daemon) -> str:
    """One line for systemd's STATUS=: state, each camera's rate or state, outbox depth."""
    cams = camera_stats(d)
    parts = [f"{n} {c['fps']:.1f} fps" if c["state"] == "streaming" else f"{n} {c['state']}" for n, c in cams.items()]
    sink: Dict[str, Any] = {}
    for s in d.pipeline.sinks if d.pipeline else []:
        sink.update(s.stats())
    tail = f" | outbox {sink['outbox_depth']}" if "outbox_depth" in sink else ""
    state = "running" if d.ready else "starting"
    return f"{state}: {', '.join(parts) or 'no cameras'}{tail}"


def status_payload(d: Daemon) -> Dict[str, Any]:
    """The retained status message."""
    info = d.running.engine.backend.info
    return {
        "version": __version__,
        "device": d.cfg.device,
        "model": d.cfg.model.display_name,
        "precision": info.precision,
        "backend": info.name,
        "accelerator": info.device,
        "cameras": [c.name for c in d.cfg.cameras if c.enabled],
        "started": round(d.started, 3),
    }


def stats(d: Daemon, final: bool = False) -> Dict[str, Any]:
    """The periodic stats message (``final`` once, after the shutdown drain)."""
    pipeline = d.running
    out: Dict[str, Any] = {
        "final": final,
        "uptime_s": round(time.time() - d.started, 1),
        "cameras": camera_stats(d),
        "latency_ms": pipeline.latency.summary(),
        "published": pipeline.published,
    }
    for s in pipeline.sinks:
        out.update(s.stats())
    out["system"] = system_stats()
    return out
