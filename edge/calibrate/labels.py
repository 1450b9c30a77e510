"""Ground-truth readers: COCO JSON, YOLO txt and Pascal VOC XML, into one form.

Every reader returns ``{image key: Truth}`` where the key is the image path relative to
the image folder (as :func:`edge.calibrate.sampling.read_images` names samples), boxes
are xyxy in pixels and class ids index the model's labels. Classes are matched by name
(COCO, VOC) or by index (YOLO, whose files carry no names).
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "voc")
SizeOf = Callable[[str], Tuple[int, int]]  # image key → (width, height)


class LabelError(EdgeError):
    """A labels file or folder that cannot be read."""


@dataclass
class Truth:
    """The labelled objects of one image; ``ignore`` marks crowd/difficult boxes."""

    boxes: np.ndarray  # N×4 float32 xyxy pixels
    class_ids: np.ndarray  # N int32
    ignore: np.ndarray  # N bool

    @classmethod
    def build(cls, rows: Sequence[Tuple[float, float, float, float, int, bool]]) -> Truth:
        if not rows:
            return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))
        a = np.array([r[:4] for r in rows], np.float32).reshape(-1, 4)
        return cls(a, np.array([r[4] for r in rows], np.int32), np.array([r[5] for r in rows], bool))

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])


class _Names:
    def __init__(self, labels: Sequence[str]) -> None:
        self.index = {n: i for i, n in enumerate(labels)}
        self.unknown: Dict[str, int] = {}

    def id(self, name: str) -> Optional[int]:
        i = self.index.get(name)
        if i is None:
            self.unknown[name] = self.unknown.get(name, 0) + 1
        return i

    def report(self, what: str) -> None:
        if self.unknown:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.unknown.items()))
            log.warning("%s: skipped objects of classes the model does not have: %s", what, names)


def detect_format(path: Path) -> str:
    """coco for a .json file; voc or yolo for a folder of .xml or .txt files."""
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if path.is_dir():
        if next(path.rglob("*.xml"), None) is not None:
            return "voc"
        if next(path.rglob("*.txt"), None) is not None:
            return "yolo"
    raise LabelError(
        f"cannot tell the label format of {path}",
        "give a COCO .json file, a folder of YOLO .txt or Pascal VOC .xml files, or --label-format",
    )


def read_coco(path: Path, labels: Sequence[str]) -> Dict[str, Truth]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"cannot read {path}: {exc}", "check --labels") from None
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}", "check --labels") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise LabelError(f"{path} is not a COCO detection file", "it needs images, annotations and categories")
    names = _Names(labels)
    cats = {c["id"]: names.id(str(c["name"])) for c in data.get("categories", [])}
    files = {im["id"]: str(im["file_name"]) for im in data["images"]}
    rows: Dict[str, List[Tuple[float, float, float, float, int, bool]]] = {f: [] for f in files.values()}
    for ann in data["annotations"]:
        cid = cats.get(ann.get("category_id"))
        image = files.get(ann.get("image_id"))
        if cid is None or image is None:
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        rows[image].append((x, y, x + w, y + h, cid, bool(ann.get("iscrowd", 0))))
    names.report(str(path))
    return {k: Truth.build(v) for k, v in rows.items()}


def read_yolo(folder: Path, labels: Sequence[str], keys: Sequence[str], size_of: SizeOf) -> Dict[str, Truth]:
    """``<stem>.txt`` per image with ``class cx cy w h`` (0..1); a missing file is an empty image."""
    out: Dict[str, Truth] = {}
    by_stem = {p.relative_to(folder).with_suffix("").as_posix(): p for p in folder.rglob("*.txt")}
    for key in keys:
        stem = Path(key).with_suffix("").as_posix()
        f = by_stem.get(stem) or by_stem.get(Path(stem).name)
        rows: List[Tuple[float, float, float, float, int, bool]] = []
        if f is not None:
            w, h = size_of(key)
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 5:
                    raise LabelError(f"{f}:{n}: expected 'class cx cy w h'", "YOLO labels are normalised 0..1")
                try:
                    cid = int(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:5])
                except ValueError:
                    raise LabelError(f"{f}:{n}: not numbers: {line.strip()!r}", "class cx cy w h") from None
                if not 0 <= cid < len(labels):
                    raise LabelError(f"{f}:{n}: class {cid} is outside the model's {len(labels)} labels",
                                     "YOLO class ids index model.labels")
                rows.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, cid, False))
        out[key] = Truth.build(rows)
    return out


def read_voc(folder: Path, labels: Sequence[str], keys: Sequence[str]) -> Dict[str, Truth]:
    """``<stem>.xml`` per image; 1-based inclusive pixel boxes; ``difficult`` objects are ignored."""
    names = _Names(labels)
    by_stem = {p.relative_to(folder).with_suffix("").as_posix(): p for p in folder.rglob("*.xml")}
    out: Dict[str, Truth] = {}
    for key in keys:
        stem = Path(key).with_suffix("").as_posix()
        f = by_stem.get(stem) or by_stem.get(Path(stem).name)
        rows: List[Tuple[float, float, float, float, int, bool]] = []
        if f is not None:
            try:
                root = ET.parse(str(f)).getroot()
            except ET.ParseError as exc:
                raise LabelError(f"{f}: not valid XML: {exc}", "Pascal VOC annotation files are XML") from None
            for obj in root.iter("object"):
                cid = names.id((obj.findtext("name") or "").strip())
                box = obj.find("bndbox")
                if cid is None or box is None:
                    continue
                try:
                    x1, y1, x2, y2 = (float(box.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
                except ValueError:
                    raise LabelError(f"{f}: a bndbox value is not a number", "xmin/ymin/xmax/ymax") from None
                difficult = (obj.findtext("difficult") or "0").strip() == "1"
                rows.append((x1 - 1, y1 - 1, x2, y2, cid, difficult))
        out[key] = Truth.build(rows)
    names.report(str(folder))
    return out


def read_labels(
    path: Path, labels: Sequence[str], keys: Sequence[str], size_of: SizeOf, fmt: str = "auto"
) -> Dict[str, Truth]:
    """Ground truth for the images ``keys`` from ``path`` in any supported format."""
    if not path.exists():
        raise LabelError(f"labels not found: {path}", "check --labels")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "coco":
        if not path.is_file():
            raise LabelError(f"COCO labels must be a .json file, not {path}", "check --labels")
        truth = read_coco(path, labels)
        return {k: truth.get(k) or truth.get(Path(k).name) or Truth.build([]) for k in keys}
    if not path.is_dir():
        raise LabelError(f"{fmt.upper()} labels must be a folder, not {path}", "check --labels")
    if fmt == "yolo":
        return read_yolo(path, labels, keys, size_of)
    if fmt == "voc":
        return read_voc(path, labels, keys)
    raise LabelError(f"unknown label format {fmt!r}", f"one of {', '.join(FORMATS)}")
