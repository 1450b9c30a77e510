"""TensorRtRunner and the CUDA preprocessor's host side, on the contract fakes (tests/fakes).

The fakes are not TensorRT or pycuda: they enforce the documented API of each band and
pycuda's context rules, keep device memory on the host and run the ONNX model with
onnxruntime, so the runner's data path is checked end to end on the real model and video.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from fakes.harness import FakeEnv, fake_env, patch_modules
from fakes.models import efficientnms_model, nms_executor, tiny_detector
from fakes.pycuda_fake import Error as FakeCudaError
from fakes.tensorrt_fake import register_executor

from edge.errors import ModelError
from edge.frames import FrameRing
from edge.infer.onnxruntime import OnnxRuntimeBackend
from edge.infer.tensorrt.builder import build_engine
from edge.infer.tensorrt.runner import EngineLoadError, TensorRtRunner
from edge.postprocess.detect import make_decoder
from edge.postprocess.pipeline import Filters, PostProcessor
from edge.preprocess import cuda as cuda_pre
from edge.preprocess.base import InputGeometry
from edge.preprocess.cpu import CpuPreprocessor

NANODET = InputGeometry(416, 416, 1, "bgr", "letterbox", True, 114, (103.53, 116.28, 123.675),
                        (57.375, 57.12, 58.395))


def _runner(env: FakeEnv, model: Path, precision: str = "fp16", **kw: Any) -> TensorRtRunner:
    batch = kw.pop("batch", 1)
    plan = build_engine(model, precision, compat=env.compat, device=env.device, batch=batch)
    return TensorRtRunner(env.compat, env.device, plan, precision=precision, batch=batch, **kw)


@pytest.fixture(scope="module")
def ort(assets) -> Any:  # type: ignore[no-untyped-def]
    backend = OnnxRuntimeBackend(assets.model, threads=1)
    yield backend
    backend.close()


@pytest.mark.parametrize(("band", "api"), [("8.2", "execute_async_v2"), ("8.5", "execute_async_v3"),
                                           ("10", "execute_async_v3"), ("11", "execute_async_v3")])
def test_outputs_match_onnxruntime_and_decode_the_same(band: str, api: str, assets, video_frames, ort) -> None:
    env = fake_env(band)
    runner = _runner(env, assets.model, "fp32" if band == "11" else "fp16")
    assert [o.name for o in runner.outputs] == [o.name for o in ort.outputs]
    assert [o.shape for o in runner.outputs] == [o.shape for o in ort.outputs]
    batch, placements = CpuPreprocessor(NANODET)([video_frames[5]])
    runner.activate()
    try:
        got = runner.infer(batch)
    finally:
        runner.deactivate()
    want = ort.infer(batch)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6)
    assert api in [c[0] for c in env.calls]
    post = PostProcessor(make_decoder(runner.outputs, 416, 416, 80), ["x"] * 80)
    dets = post(got, 0, placements[0], Filters(score_threshold=0.35, classes=None))
    ref = post(want, 0, placements[0], Filters(score_threshold=0.35, classes=None))
    assert len(dets) == len(ref) >= 3 and (dets.class_ids == 0).sum() >= 3  # persons on the shared video
    runner.close()
    runner.close()  # idempotent
    assert not env.cuda.state.memory  # every device buffer and pinned buffer freed
    env.close()


def test_efficientnms_outputs_reach_the_decoder_unchanged(tmp_path: Path) -> None:
    env = fake_env("10")
    model = efficientnms_model(tmp_path / "nms.onnx")
    register_executor(model.name, nms_executor(found=3))
    try:
        runner = _runner(env, model)
        with env.device.activated():
            out = runner.infer(np.zeros((1, 3, 64, 64), np.float32))
        assert list(out) == ["num_dets", "det_boxes", "det_scores", "det_classes"]
        assert out["num_dets"].dtype == np.int32 and out["det_classes"].dtype == np.int32
        decoder = make_decoder(runner.outputs, 64, 64, 80)
        assert decoder.name == "efficientnms"
        _boxes, scores, cls = decoder.decode(out, 0, np.full(80, 0.5, np.float32))
        assert len(scores) == 3 and list(cls) == [0, 2, 0]
        runner.close()
    finally:
        register_executor(model.name, None)


def test_plugins_are_initialised_before_deserializing(tmp_path: Path) -> None:
    env = fake_env("8.5")
    model = efficientnms_model(tmp_path / "nms.onnx")
    plan = build_engine(model, "fp16", compat=env.compat, device=env.device)
    env.trt.plugins_ready = False  # a fresh process
    runner = TensorRtRunner(env.compat, env.device, plan)
    names = [c[0] for c in env.calls]
    assert names.index("init_libnvinfer_plugins", names.index("Runtime") - 1) < names.index("deserialize_cuda_engine")
    runner.close()


def test_foreign_or_damaged_engines_are_refused(tmp_path: Path) -> None:
    model = tiny_detector(tmp_path / "t.onnx")
    old = fake_env("8.5")
    plan = build_engine(model, "fp16", compat=old.compat, device=old.device)
    new = fake_env("8.6")
    with pytest.raises(EngineLoadError, match="another TensorRT or for another GPU"):
        TensorRtRunner(new.compat, new.device, plan)
    with pytest.raises(EngineLoadError):
        TensorRtRunner(old.compat, old.device, plan[: len(plan) // 2])
    assert not new.cuda.state.memory and not old.cuda.state.memory


def test_dynamic_batch_engine(tmp_path: Path) -> None:
    env = fake_env("8.2")
    runner = _runner(env, tiny_detector(tmp_path / "dyn.onnx", batch="N"), batch=2)
    assert runner.inputs[0].shape == (2, 3, 32, 32) and runner.batch == 2
    with env.device.activated():
        out = runner.infer(np.ones((2, 3, 32, 32), np.float32))
        one = runner.infer(np.ones((1, 3, 32, 32), np.float32))  # a partial batch fits too
    assert out["scores"].shape == (2, 16, 2)
    np.testing.assert_allclose(out["scores"][0], 1 / (1 + np.exp(-1.0)), rtol=1e-5)
    np.testing.assert_allclose(one["scores"][0], out["scores"][0])
    with pytest.raises(ValueError, match="does not fit"):
        runner.infer(np.ones((3, 3, 32, 32), np.float32))
    runner.close()


def test_cuda_work_needs_the_context_in_each_thread(tmp_path: Path) -> None:
    env = fake_env("10")
    runner = _runner(env, tiny_detector(tmp_path / "t.onnx"))
    x = np.ones((1, 3, 32, 32), np.float32)
    errors: List[BaseException] = []
    results: List[Any] = []

    def worker(activate: bool) -> None:
        try:
            if activate:
                runner.activate()
            try:
                results.append(runner.infer(x))
            finally:
                if activate:
                    runner.deactivate()
        except FakeCudaError as exc:
            errors.append(exc)

    for activate in (False, True):
        t = threading.Thread(target=worker, args=(activate,))
        t.start()
        t.join(30)
    assert len(errors) == 1 and "no CUDA context" in str(errors[0]) and len(results) == 1
    closer = threading.Thread(target=runner.close)  # the daemon may close from the inference thread
    closer.start()
    closer.join(30)
    assert not env.cuda.state.memory


@pytest.mark.parametrize(("machine", "path"), [("h200", "numpy"), ("h200", "pinned"), ("orin", "mapped")])
def test_cuda_preprocessor_feeds_the_engine(machine: str, path: str, assets, video_frames, monkeypatch) -> None:
    env = fake_env("10", machine)
    patch_modules(monkeypatch, env)
    monkeypatch.setattr(cuda_pre, "_nvcc", lambda: "nvcc")
    runner = _runner(env, assets.model, mapped_memory="auto")
    pre = runner.make_preprocessor(NANODET)
    assert pre is not None and pre.buffers == 2
    alloc = runner.frame_allocator() if path != "numpy" else None
    ring = FrameRing(3, alloc)
    cpu = CpuPreprocessor(NANODET)
    log = env.cuda.state.log
    for frame in video_frames[:3]:
        buf, release = ring.acquire(frame.shape)  # type: ignore[misc]
        buf[:] = frame
        runner.activate()
        try:
            batch, placements = pre([buf])
            on_device = env.cuda.state.resolve(batch.ptr, 3 * 416 * 416 * 4).view(np.float32).reshape(1, 3, 416, 416)
            ref, ref_pl = cpu([frame])
            assert placements == ref_pl
            # within one pixel level of the CPU path (1/255 of the range; here std is in pixel levels)
            levels = np.abs(on_device - ref) * np.array(NANODET.std, np.float32)[None, :, None, None]
            assert levels.max() <= 1.0 + 1e-3
            start = len(log)
            out = runner.infer(batch)
        finally:
            runner.deactivate()
        release()
        step = [e[0] for e in log[start:]]
        # the inference stream waited for the batch, then released its slot with an event
        assert step[0] == "stream.wait_for_event" and "event.record" in step
        assert set(out) == {o.name for o in runner.outputs}
    copies = [e for e in log if e[0] == "htod"]
    if path == "mapped":
        assert pre.zero_copy == 3 and pre.copies == 0 and runner.mapped
    else:
        kind = "pinned" if path == "pinned" else "pageable"
        assert pre.copies == 3 and all(e[3] == kind for e in copies[-3:]), copies
    pre.close()
    runner.close()
    assert not env.cuda.state.memory


def test_preprocessor_waits_for_the_slot_to_be_consumed(assets, video_frames, monkeypatch) -> None:
    env = fake_env("8.6")
    patch_modules(monkeypatch, env)
    monkeypatch.setattr(cuda_pre, "_nvcc", lambda: "nvcc")
    runner = _runner(env, assets.model)
    with env.device.activated():
        pre = runner.make_preprocessor(NANODET)
        log = env.cuda.state.log
        first, _ = pre([video_frames[0]])
        second, _ = pre([video_frames[1]])
        assert first.slot != second.slot  # double buffered: n+1 prepared while n is in flight
        runner.infer(first)
        start = len(log)
        third, _ = pre([video_frames[2]])
        assert third.slot == first.slot
        waited = [e for e in log[start:] if e[0] == "stream.wait_for_event"]
        assert waited and waited[0][2] == id(runner.slot_consumed[first.slot])
        pre.close()
    runner.close()


def test_geometry_must_match_the_engine(assets, monkeypatch) -> None:
    env = fake_env("10")
    patch_modules(monkeypatch, env)
    runner = _runner(env, assets.model)
    wrong = InputGeometry(640, 640, 1, "bgr", "letterbox", True, 114, (0, 0, 0), (1, 1, 1))
    with pytest.raises(ModelError, match="does not match the engine input"):
        runner.make_preprocessor(wrong)
    runner.close()
