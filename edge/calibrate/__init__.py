"""edge-calibrate: INT8 calibration, engine builds and the accuracy/speed sweep.

Frames reach the model through the daemon's own code (``detector``: CPU preprocessing,
the backend, the decoders and filters), so calibration sees what deployment sees.

  sampling     seeded, spread, disjoint calibration/evaluation frames (video, folder, stream)
  stats        streaming per-tensor histograms and clipping rules (bounded memory)
  graph, qdq   repairs (the -inf Pad), symmetric INT8 Q/DQ models in TensorRT's placement
  sensitivity  per-layer INT8 error on calibration batches; range choice per layer
  workflow     the calibrate step and its record (calibration.json)
  calibrator   TensorRT implicit calibrator (made in a factory) and the cache format
  mixed        layer ranking and the fewest layers to keep in float
  labels       COCO JSON, YOLO txt, Pascal VOC XML readers
  evaluate     mAP (pycocotools), agreement with FP32, deployed match, output error
  bench        latency, throughput, memory
  sweep        candidates measured on the same frames; sweep_run: the command
  selection    the fastest candidate within the budget, and --apply
  report       report.json, report.md, report.png
  trt          the TensorRT side through edge.infer.tensorrt (engine cache, runner)

Nothing here imports tensorrt, pycuda, onnx, matplotlib or pycocotools at module level.
"""
