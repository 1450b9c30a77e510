"""Open the model-dependent parts as one :class:`~edge.pipeline.Engine`."""

from __future__ import annotations

import logging
from typing import Optional

from edge.config.model import Config
from edge.infer.select import Progress, input_geometry, load_labels, open_backend
from edge.pipeline import Engine
from edge.postprocess.detect import make_decoder
from edge.postprocess.pipeline import PostProcessor
from edge.preprocess.cpu import CpuPreprocessor

log = logging.getLogger(__name__)


def open_engine(cfg: Config, progress: Optional[Progress] = None) -> Engine:
    """Backend, preprocessor, decoder and labels for ``cfg``; EdgeError on any user-fixable problem."""
    backend = open_backend(cfg, progress)
    try:
        geometry = input_geometry(cfg.model, backend)
        labels = load_labels(cfg.model)
        decoder = make_decoder(
            backend.outputs, geometry.width, geometry.height, len(labels),
            cfg.model.format, cfg.model.strides, cfg.model.reg_max,
        )
        pre = backend.make_preprocessor(geometry) or CpuPreprocessor(geometry)
    except BaseException:
        backend.close()
        raise
    log.info(
        "model %s: %s input %dx%d (%s, %s), %s outputs, %d classes; backend %s %s on %s",
        cfg.model.display_name, backend.input.name, geometry.width, geometry.height, geometry.color,
        geometry.resize, decoder.name, len(labels), backend.info.name, backend.info.precision, backend.info.device,
    )
    return Engine(backend, pre, PostProcessor(decoder, labels), geometry, labels)
