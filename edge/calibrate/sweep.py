"""The sweep: every candidate measured for accuracy and speed on the same frames.

Accuracy runs the daemon's path (preprocess → backend → postprocess) on the evaluation
set; the reference is the FP32 model on ONNX Runtime. Output error runs the candidate and
the FP32 reference side by side on the calibration set. Speed is timed where the
candidate runs (see :mod:`edge.calibrate.bench`). When no INT8 candidate meets the
budget, :mod:`edge.calibrate.mixed` keeps the most sensitive layers in float until one does.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edge.calibrate import bench, graph, mixed
from edge.calibrate.detector import Detector, open_onnx
from edge.calibrate.evaluate import OutputError, coco_map, deployed_match, truth_from_detections
from edge.calibrate.labels import Truth
from edge.calibrate.progress import QUIET, Progress
from edge.calibrate.sampling import FrameSet
from edge.calibrate.selection import within
from edge.config.model import Config
from edge.errors import EdgeError
from edge.infer.base import Backend
from edge.postprocess.pipeline import Filters
from edge.postprocess.types import Detections

log = logging.getLogger(__name__)

EVAL_SCORE_THRESHOLD = 0.05  # predictions for mAP are taken this low, so ranking is measured


@dataclass
class Candidate:
    name: str
    precision: str  # "fp32" | "fp16" | "int8" | "mixed"
    runtime: str  # "onnxruntime" | "tensorrt"
    model: Path  # ONNX file run (or built from)
    qdq: bool = False
    calibration_cache: Optional[Path] = None
    layer_precisions: Dict[str, str] = field(default_factory=dict)
    kept_float: List[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Result:
    candidate: Candidate
    map: Optional[float] = None
    map50: Optional[float] = None
    per_class: Dict[str, float] = field(default_factory=dict)
    drop: Optional[float] = None  # mAP50-95 points below FP32
    recall: Optional[float] = None  # of FP32's published detections, at the deployed threshold
    precision: Optional[float] = None
    output_error: Dict[str, float] = field(default_factory=dict)
    speed: Optional[bench.Speed] = None
    size_bytes: Optional[int] = None
    memory_bytes: Optional[int] = None
    memory_kind: str = ""
    within_budget: bool = False
    failed: str = ""

    @property
    def max_output_error(self) -> Optional[float]:
        return max(self.output_error.values()) if self.output_error else None


@dataclass
class Opened:
    backend: Backend
    size_bytes: Optional[int]
    probe: bench.MemoryProbe
    device: str


Opener = Callable[[Candidate], Opened]


@dataclass
class SweepOptions:
    max_drop: float = 1.0
    warmup: int = 10
    runs: int = 100
    threads: int = 0
    mixed: bool = True
    max_keep: Optional[int] = None
    min_class_objects: Optional[int] = None  # None: 10 in agreement mode, 0 with labels


def open_onnxruntime(threads: int) -> Opener:
    device = f"cpu: {bench.cpu_name()}"

    def opener(c: Candidate) -> Opened:
        probe = bench.MemoryProbe(None)
        backend = open_onnx(c.model, threads, "int8" if c.qdq else "fp32")
        return Opened(backend, Path(c.model).stat().st_size, probe, device)

    return opener


class Sweep:
    """Holds the frames, the FP32 reference and the ground truth; evaluates candidates."""

    def __init__(self, cfg: Config, eval_images: FrameSet, calib_images: FrameSet,
                 options: SweepOptions, truth: Optional[List[Truth]] = None, progress: Progress = QUIET) -> None:
        self.cfg = cfg
        self.images = eval_images
        self.options = options
        self.progress = progress
        self.low = Filters(score_threshold=min(EVAL_SCORE_THRESHOLD, cfg.detect.score_threshold), iou_threshold=
                           cfg.detect.iou_threshold, classes=cfg.detect.classes,
                           class_agnostic=cfg.detect.class_agnostic_nms, max_detections=300)
        self.mode = "labels" if truth is not None else "agreement"
        mco = options.min_class_objects
        self.min_objects = mco if mco is not None else (0 if truth is not None else 10)
        self.reference = Detector(cfg, open_onnx(cfg.model.path, options.threads))
        self.batches = self.reference.tensors(calib_images)
        with progress.bar("FP32 reference", len(self.images)):
            self.ref_deployed, self.ref_low = self._detect(self.reference)
        self.truth = truth if truth is not None else truth_from_detections(self.ref_deployed)
        self.labels = self.reference.labels
        keep = cfg.detect.classes
        self.classes = [self.labels.index(c) for c in keep if c in self.labels] if keep else None
        ref = coco_map(self.truth, self.ref_low, self.labels, self.classes, self.min_objects)
        self.reference_map = ref.map
        self.class_counts, self.left_out = ref.counts, ref.left_out
        if ref.map is None:
            raise EdgeError(
                "nothing to measure accuracy against: the reference finds no object of the kept classes "
                f"in the evaluation frames (classes need {self.min_objects}+ objects)" if self.mode == "agreement"
                else "the labels hold no object of the kept classes",
                "use frames that show the objects the detector is deployed for",
            )

    def _detect(self, det: Detector) -> Tuple[List[Detections], List[Detections]]:
        deployed, low = det.detect(self.images, det.filters, self.low)
        return deployed, low

    def close(self) -> None:
        self.reference.close()

    # ------------------------------------------------------------------ one candidate
    def evaluate(self, c: Candidate, opener: Opener, speed: bool = True) -> Result:
        res = Result(c)
        opened = opener(c)
        with Detector(self.cfg, opened.backend) as det:
            with self.progress.bar(f"{c.name}: accuracy", len(self.images)):
                deployed, low = self._detect(det)
            acc = coco_map(self.truth, low, self.labels, self.classes, self.min_objects)
            res.map, res.map50, res.per_class = acc.map, acc.map50, acc.per_class
            if acc.map is not None and self.reference_map is not None:
                res.drop = (self.reference_map - acc.map) * 100.0
            m = deployed_match(self.ref_deployed, deployed)
            res.recall, res.precision = m.recall, m.precision
            res.within_budget = within(res.drop, self.options.max_drop)
            if not speed:
                return res
            err = OutputError()
            with self.progress.bar(f"{c.name}: output error", len(self.batches)) as tick:
                for b in self.batches:
                    err.update(self.reference.infer(b), det.infer(b))
                    tick(int(b.shape[0]))
            res.output_error = err.max
            sample = next(det.batches([self.images.first()]))[0]
            with self.progress.bar(f"{c.name}: timing", self.options.runs, unit="run") as tick:
                res.speed = bench.measure(det.backend, sample, c.runtime, opened.device, self.options.warmup,
                                          self.options.runs, tick)
            opened.probe.sample()
            res.size_bytes, res.memory_bytes, res.memory_kind = opened.size_bytes, opened.probe.grown, \
                opened.probe.kind
        return res

    def accuracy_of_model(self, model_path: Path) -> Result:
        """Accuracy only, of a Q/DQ model on ONNX Runtime (the mixed-precision search)."""
        c = Candidate(model_path.name, "mixed", "onnxruntime", model_path, qdq=True)
        return self.evaluate(c, open_onnxruntime(self.options.threads), speed=False)

    # ------------------------------------------------------------------ mixed precision
    def search_mixed(self, qdq_model: Path, fp32_model: Path, order: Sequence[str], out_path: Path
                     ) -> Tuple[Optional[List[str]], List[Tuple[int, Optional[float]]]]:
        """Fewest top nodes of ``order`` in float for the Q/DQ model to meet the budget.

        Returns (nodes kept in float or None, [(k, drop)] of every step tried); the model
        found is written to ``out_path``.
        """
        qmodel, fmodel = graph.load(qdq_model), graph.load(fp32_model)
        graph.fold_neg_inf_pads(fmodel)
        graph.ensure_node_names(fmodel)
        steps: List[Tuple[int, Optional[float]]] = []
        onnx = graph._onnx()
        with tempfile.TemporaryDirectory(prefix="edge-mixed-") as tmp:
            def within_budget(nodes: List[str]) -> Tuple[bool, Optional[float]]:
                path = Path(tmp) / f"mixed-{len(nodes)}.onnx"
                onnx.save(mixed.unquantize(qmodel, fmodel, nodes), str(path))
                r = self.accuracy_of_model(path)
                steps.append((len(nodes), r.drop))
                self.progress.note(f"mixed precision: {len(nodes)} layer(s) in float -> drop "
                                   f"{'n/a' if r.drop is None else f'{r.drop:.2f}'} points")
                return r.within_budget, r.drop

            k, _ = mixed.search(order, within_budget, self.options.max_keep)
            if k < 0:
                return None, steps
            nodes = list(order[:k])
            onnx.save(mixed.unquantize(qmodel, fmodel, nodes), str(out_path))
        return nodes, steps
