"""Ground-truth readers: COCO JSON, YOLO txt, Pascal VOC XML → one form (real files in tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.calibrate.labels import LabelError, detect_format, read_labels

LABELS = ["person", "bicycle", "car"]


def _sizes(key: str) -> tuple:
    return (200, 100)  # width, height of every test image


def test_coco_json_boxes_classes_by_name_and_crowd(tmp_path: Path) -> None:
    f = tmp_path / "instances.json"
    f.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 8, "file_name": "sub/b.jpg", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 90, "bbox": [1, 1, 2, 2]},
        ],
    }))
    assert detect_format(f) == "coco"
    truth = read_labels(f, LABELS, ["a.jpg", "sub/b.jpg"], _sizes)
    a = truth["a.jpg"]
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert a.class_ids.tolist() == [2, 0]  # matched by name, not by COCO id
    assert a.ignore.tolist() == [False, True]  # crowd boxes are ignored, not missed
    assert len(truth["sub/b.jpg"]) == 0  # labelled image without objects


def test_yolo_txt_normalised_centre_boxes(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "a.txt").write_text("2 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.1 0.2\n")
    (labels / "sub" / "b.txt").write_text("1 0.25 0.75 0.5 0.5\n")
    assert detect_format(labels) == "yolo"
    truth = read_labels(labels, LABELS, ["a.jpg", "sub/b.jpg", "c.jpg"], _sizes)
    np.testing.assert_allclose(truth["a.jpg"].boxes, [[80, 30, 120, 70], [10, 0, 30, 20]], atol=1e-4)
    assert truth["a.jpg"].class_ids.tolist() == [2, 0]
    np.testing.assert_allclose(truth["sub/b.jpg"].boxes, [[0, 50, 100, 100]], atol=1e-4)
    assert len(truth["c.jpg"]) == 0  # no file: an image without objects


def test_yolo_bad_lines_are_located(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError) as err:
        read_labels(tmp_path, LABELS, ["a.jpg"], _sizes, "yolo")
    assert "a.txt:2" in err.value.message and "class 7" in err.value.message
    (tmp_path / "a.txt").write_text("0 0.5 x 0.2 0.4\n")
    with pytest.raises(LabelError, match=r"a\.txt:1"):
        read_labels(tmp_path, LABELS, ["a.jpg"], _sizes, "yolo")


def test_voc_xml_one_based_boxes_difficult_and_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename>"
        "<object><name>car</name><difficult>0</difficult>"
        "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>"
        "<object><name>person</name><difficult>1</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "<object><name>dragon</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>")
    assert detect_format(tmp_path) == "voc"
    t = read_labels(tmp_path, LABELS, ["a.jpg"], _sizes)["a.jpg"]
    np.testing.assert_allclose(t.boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert t.class_ids.tolist() == [2, 0] and t.ignore.tolist() == [False, True]
    (tmp_path / "a.xml").write_text("<annotation><object>")
    with pytest.raises(LabelError, match="not valid XML"):
        read_labels(tmp_path, LABELS, ["a.jpg"], _sizes)


def test_unusable_label_sources_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="labels not found"):
        read_labels(tmp_path / "missing.json", LABELS, [], _sizes)
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(LabelError, match=r"bad\.json:1: not valid JSON"):
        read_labels(bad, LABELS, [], _sizes)
    bad.write_text("[]")
    with pytest.raises(LabelError, match="not a COCO detection file"):
        read_labels(bad, LABELS, [], _sizes)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LabelError, match="cannot tell the label format"):
        read_labels(empty, LABELS, [], _sizes)
