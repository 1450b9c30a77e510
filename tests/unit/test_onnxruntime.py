"""The ONNX Runtime backend: the real model, tensor specs, one-line errors for bad files and providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from edge_testkit import load_make_models

from edge.errors import EXIT_HARDWARE, EXIT_MODEL, HardwareError, ModelError
from edge.infer.base import TensorSpec
from edge.infer.onnxruntime import OnnxRuntimeBackend, choose_providers


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return load_make_models().write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def backend(assets: Any) -> Any:
    with OnnxRuntimeBackend(assets.model, threads=2, providers=["CPUExecutionProvider"]) as b:
        yield b


# --------------------------------------------------------------------------- the real model
def test_real_model_specs(backend: OnnxRuntimeBackend) -> None:
    assert backend.inputs == [TensorSpec("input_1:0", (1, 3, 416, 416), "float32")]
    assert backend.input.is_image and backend.batch == 1
    shapes = {o.name: o.shape for o in backend.outputs}
    assert shapes == {
        "Identity:0": (1, 2704, 80),
        "Identity_1:0": (1, 676, 80),
        "Identity_2:0": (1, 169, 80),
        "Identity_3:0": (1, 2704, 44),
        "Identity_4:0": (1, 676, 44),
        "Identity_5:0": (1, 169, 44),
    }
    assert all(o.dtype == "float32" for o in backend.outputs)
    assert (backend.info.name, backend.info.precision, backend.info.device) == ("onnxruntime", "fp32", "cpu")
    assert "CPUExecutionProvider" in backend.info.detail


def test_real_model_infers_on_a_real_frame(backend: OnnxRuntimeBackend, video_frames: List[np.ndarray]) -> None:
    from edge.preprocess.base import InputGeometry
    from edge.preprocess.cpu import CpuPreprocessor

    g = InputGeometry(416, 416, 1, "bgr", "letterbox", True, 114, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))
    batch, _ = CpuPreprocessor(g)([video_frames[0]])
    out = backend.infer(batch)
    assert set(out) == {o.name for o in backend.outputs}
    for spec in backend.outputs:
        assert out[spec.name].shape == spec.shape and out[spec.name].dtype == np.float32
    scores = out["Identity:0"]
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # sigmoid already applied
    assert scores.max() > 0.5  # pedestrians in the frame
    again = backend.infer(batch)
    np.testing.assert_array_equal(again["Identity:0"], scores)  # deterministic
    assert not np.shares_memory(again["Identity:0"], scores)  # callers own the arrays


def test_closed_backend_refuses_to_infer(assets: Any) -> None:
    b = OnnxRuntimeBackend(assets.model, threads=1)
    b.close()
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.infer(np.zeros((1, 3, 416, 416), np.float32))


# --------------------------------------------------------------------------- bad model files
def _assert_one_line_model_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ModelError) as err:
        OnnxRuntimeBackend(path, threads=1)
    text = str(err.value)
    assert "\n" not in text and err.value.exit_code == EXIT_MODEL
    assert str(path) in text
    for f in fragments:
        assert f in text, text
    assert "[ONNXRuntimeError]" not in text


def test_missing_model_file(tmp_path: Path) -> None:
    _assert_one_line_model_error(tmp_path / "nope.onnx", "model file not found", "check model.path")


def test_directory_instead_of_a_model(tmp_path: Path) -> None:
    _assert_one_line_model_error(tmp_path, "model file is a directory")


def test_non_onnx_files(tmp_path: Path, assets: Any) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    _assert_one_line_model_error(text, "cannot load model", "INVALID_PROTOBUF")
    _assert_one_line_model_error(assets.video, "cannot load model", "INVALID_PROTOBUF")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _assert_one_line_model_error(empty, "cannot load model")


def test_corrupt_model_file(tmp_path: Path, assets: Any) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(assets.model.read_bytes()[:200_000])
    _assert_one_line_model_error(truncated, "cannot load model", "valid ONNX file")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_one_line_model_error(noise, "cannot load model")


def test_model_with_an_unknown_operator(models: Dict[str, Path]) -> None:
    _assert_one_line_model_error(models["unknown_op"], "cannot load model", "FrobnicateBoxes")


# --------------------------------------------------------------------------- providers and precision
def test_choose_providers() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["auto"], gpu) == gpu
    assert choose_providers(["auto"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider", "auto"], gpu) == [
        "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider",
    ]
    assert choose_providers(["CPUExecutionProvider"], gpu) == ["CPUExecutionProvider"]
    with pytest.raises(HardwareError) as err:
        choose_providers(["CUDAExecutionProvider"], ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert "'CUDAExecutionProvider' is not available here" in str(err.value)
    assert "available: AzureExecutionProvider, CPUExecutionProvider" in str(err.value)
    assert err.value.exit_code == EXIT_HARDWARE


def test_unavailable_provider_is_a_hardware_error(assets: Any) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the provider is available here")
    with pytest.raises(HardwareError, match="'CUDAExecutionProvider' is not available here"):
        OnnxRuntimeBackend(assets.model, providers=["CUDAExecutionProvider"])
    with pytest.raises(HardwareError, match="'NoSuchExecutionProvider' is not available"):
        OnnxRuntimeBackend(assets.model, providers=["NoSuchExecutionProvider"])


def test_fp16_is_refused_on_onnxruntime(assets: Any) -> None:
    with pytest.raises(HardwareError, match="precision fp16 is not available on ONNX Runtime"):
        OnnxRuntimeBackend(assets.model, precision="fp16")


# --------------------------------------------------------------------------- generated models
def test_dynamic_batch_spec(models: Dict[str, Path]) -> None:
    with OnnxRuntimeBackend(models["yolov8_dynamic"], threads=1) as b:
        assert b.input.shape == (None, 3, 64, 64) and b.input.is_image
        assert b.batch == 1
        out = b.infer(np.zeros((2, 3, 64, 64), np.float32))
        assert out["output0"].shape[0] == 2


def test_efficientnms_output_dtypes(models: Dict[str, Path]) -> None:
    with OnnxRuntimeBackend(models["efficientnms"], threads=1) as b:
        dtypes = {o.name: o.dtype for o in b.outputs}
    assert dtypes == {"num_dets": "int32", "det_boxes": "float32", "det_scores": "float32", "det_classes": "int32"}


def test_model_whose_input_is_not_an_image(models: Dict[str, Path]) -> None:
    from edge.config.model import ModelConfig
    from edge.infer.select import input_geometry

    with OnnxRuntimeBackend(models["not_image"], threads=1) as b:
        assert b.input == TensorSpec("x", (1, 16), "float32") and not b.input.is_image
        with pytest.raises(ModelError, match=r"model input 'x' has shape \[1, 16\], not an image tensor"):
            input_geometry(ModelConfig(path=models["not_image"]), b)
    with OnnxRuntimeBackend(models["uint8_input"], threads=1) as b:
        assert b.input.dtype == "uint8" and b.input.is_image
        with pytest.raises(ModelError, match="is uint8"):
            input_geometry(ModelConfig(path=models["uint8_input"]), b)
