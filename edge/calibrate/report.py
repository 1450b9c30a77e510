"""The sweep's report: ``report.json`` (everything), ``report.md`` (the table) and ``report.png``.

The plot shows accuracy (mAP50-95) against median latency, one point per candidate, the
budget line, and the chosen point ringed. Speeds measured on the CPU are labelled as CPU
figures: they say nothing about a TensorRT device.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edge.calibrate.sweep import Result


@dataclass
class Report:
    mode: str  # "agreement" | "labels"
    model: str
    source: str
    eval_frames: int
    calib_frames: int
    seed: int
    max_drop: float
    target: str
    reference_map: Optional[float]
    results: List[Result]
    selected: Optional[str]
    reason: str
    mixed: Dict[str, Any] = field(default_factory=dict)  # search steps, layers kept in float, speed cost
    notes: List[str] = field(default_factory=list)
    class_counts: Dict[str, int] = field(default_factory=dict)  # reference objects per class
    left_out: List[str] = field(default_factory=list)  # classes too rare for the mean
    min_class_objects: int = 0

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        for r, src in zip(d["results"], self.results):
            r["candidate"]["model"] = str(src.candidate.model)
            cache = src.candidate.calibration_cache
            r["candidate"]["calibration_cache"] = str(cache) if cache else None
            r["max_output_error"] = src.max_output_error
        return _clean(d)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def _f(v: Optional[float], fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def table(report: Report) -> List[str]:
    rows = [
        "| candidate | runtime (speed measured on) | mAP50-95 | mAP50 | drop (pts) | recall / precision at the "
        "deployed threshold | max output error | latency median / p99 (ms) | throughput (img/s) | size (MB) "
        "| memory (MB) | within budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        c, s = r.candidate, r.speed
        chosen = " **(selected)**" if c.name == report.selected else ""
        where = f"{c.runtime} ({s.device})" if s else c.runtime
        if s and s.runtime == "onnxruntime":
            where += " — CPU figure"
        mem = "–" if r.memory_bytes is None else f"{r.memory_bytes / 1e6:.0f} ({r.memory_kind})"
        rows.append(
            f"| {c.name}{chosen} | {where} | {_f(r.map)} | {_f(r.map50)} | {_f(r.drop, '{:.2f}')} | "
            f"{_f(r.recall)} / {_f(r.precision)} | {_f(r.max_output_error, '{:.4g}')} | "
            f"{_f(s.median_ms if s else None, '{:.2f}')} / {_f(s.p99_ms if s else None, '{:.2f}')} | "
            f"{_f(s.throughput_fps if s else None, '{:.1f}')} | "
            f"{_f(r.size_bytes / 1e6 if r.size_bytes else None, '{:.1f}')} | {mem} | "
            f"{'failed: ' + r.failed if r.failed else 'yes' if r.within_budget else 'no'} |"
        )
    return rows


def markdown(report: Report) -> str:
    mode = ("agreement with the FP32 model's own detections (its detections at the deployed threshold are the "
            "ground truth)" if report.mode == "agreement" else "labelled ground truth")
    lines = [
        f"# edge-calibrate sweep: {Path(report.model).name}",
        "",
        f"- Accuracy mode: **{report.mode}**: {mode}; FP32 mAP50-95 = {_f(report.reference_map)}.",
        f"- Evaluation: {report.eval_frames} frames; calibration: {report.calib_frames} frames "
        f"(disjoint, seed {report.seed}) from `{report.source}`.",
        f"- Budget: at most {report.max_drop:g} mAP50-95 points below FP32; target runtime: {report.target}.",
        *([f"- Classes with fewer than {report.min_class_objects} reference objects are listed per class but left "
           f"out of the means: {', '.join(report.left_out)}."] if report.left_out else []),
        f"- Selection: **{report.selected or 'none'}**: {report.reason}.",
        "",
        *table(report),
        "",
    ]
    if report.mixed:
        m = report.mixed
        lines += ["## Mixed precision", ""]
        if m.get("kept_float"):
            lines.append(f"{len(m['kept_float'])} layer(s) kept in float to meet the budget: "
                         + ", ".join(f"`{n}`" for n in m["kept_float"]) + ".")
        elif m.get("failed"):
            lines.append(m["failed"])
        for k, drop in m.get("steps", []):
            lines.append(f"- {k} layer(s) in float: drop {_f(drop, '{:.2f}')} points")
        if m.get("speed_cost"):
            lines.append(f"- Speed cost against full INT8: {m['speed_cost']}")
        lines.append("")
    per_class = [r for r in report.results if r.per_class]
    if per_class:
        classes = sorted({k for r in per_class for k in r.per_class})
        head = [f"{k} ({report.class_counts[k]})" if k in report.class_counts else k for k in classes]
        lines += ["## Per-class AP50-95 (reference objects)", "", "| candidate | " + " | ".join(head) + " |",
                  "|---|" + "---|" * len(classes)]
        for r in per_class:
            lines.append(f"| {r.candidate.name} | " + " | ".join(_f(r.per_class.get(k)) for k in classes) + " |")
        lines.append("")
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    try:
        pts: List[Tuple[Result, float, float]] = [
            (r, r.speed.median_ms, r.map) for r in report.results if r.speed is not None and r.map is not None
        ]
        for r, x, y in pts:
            cpu = r.speed is not None and r.speed.runtime == "onnxruntime"
            ax.scatter([x], [y], marker="o" if not cpu else "s", s=40, zorder=3)
            ax.annotate(r.candidate.name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
            if r.candidate.name == report.selected:
                ax.scatter([x], [y], s=260, facecolors="none", edgecolors="red", linewidths=2, zorder=4,
                           label="selected")
        if report.reference_map is not None:
            ax.axhline(report.reference_map - report.max_drop / 100.0, color="grey", linestyle="--", linewidth=1,
                       label=f"budget: FP32 − {report.max_drop:g} pts")
        runtimes = sorted({r.speed.runtime for r, _, _ in pts if r.speed})
        where = " + ".join(runtimes) or "nothing timed"
        ax.set_xlabel(f"median latency per batch, ms ({where}{'; CPU figures' if 'onnxruntime' in runtimes else ''})")
        ax.set_ylabel(f"mAP50-95 ({report.mode})")
        ax.set_title(f"{Path(report.model).name}: accuracy vs latency")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(str(path))
    finally:
        plt.close(fig)
    return path


def write(report: Report, out_dir: Path) -> Dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "report.png"}
    paths["json"].write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown(report), encoding="utf-8")
    plot(report, paths["png"])
    return paths


def result_rows(results: Sequence[Result]) -> List[str]:
    """Short console lines, one per candidate."""
    out = []
    for r in results:
        s = r.speed
        if r.failed:
            out.append(f"{r.candidate.name:<16} failed: {r.failed}")
            continue
        out.append(f"{r.candidate.name:<16} mAP50-95 {_f(r.map)}  drop {_f(r.drop, '{:+.2f}')} pts  "
                   f"{_f(s.median_ms if s else None, '{:.2f}')} ms ({s.runtime if s else 'not timed'})"
                   f"{'  within budget' if r.within_budget else ''}")
    return out
