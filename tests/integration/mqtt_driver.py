"""Test driver: feeds an MqttSink with FrameResults at a fixed rate, in its own process.

The SIGKILL and disk-failure tests run it as a subprocess (a process must die for real).
It prints one JSON object per line on stdout:

    {"event": "start", "session": S}
    {"event": "durable", "seq": N}     every message up to seq N is acknowledged or on disk
    {"event": "done", "stats": {...}}  after a clean close

    python tests/integration/mqtt_driver.py --port P --state DIR [--rate 30] [--count N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import time
from pathlib import Path

from edge.config.model import MqttConfig
from edge.postprocess.types import Detections, FrameResult
from edge.publish.mqtt import MqttSink
from edge.publish.payload import PayloadContext, build_payload


def emit(**kw: object) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--device", default="drv")
    ap.add_argument("--camera", default="cam")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--count", type=int, default=0, help="stop after this many messages (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: no limit)")
    ap.add_argument("--linger", type=float, default=0.0, help="keep running this long after the last message")
    ap.add_argument("--commit-ms", type=int, default=100)
    ap.add_argument("--fsize-limit", type=int, default=0, help="RLIMIT_FSIZE in bytes after start-up (disk full)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    cfg = MqttConfig(port=args.port, reconnect_min_s=0.2, reconnect_max_s=1.0,
                     outbox={"commit_interval_ms": args.commit_ms})
    ctx = PayloadContext(args.device, "drv-model", "fp32", "test", ["person"])
    sink = MqttSink(cfg, args.device, args.state, session=ctx.session)
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    sink.start()
    emit(event="start", session=ctx.session)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    t0 = time.monotonic()
    sent = durable = 0
    period = 1.0 / args.rate
    dets = Detections.empty()
    while not stop["now"]:
        now = time.monotonic()
        done = (args.count and sent >= args.count) or (args.seconds and now - t0 >= args.seconds)
        if done and now - t0 >= (sent * period) + args.linger:
            break
        if not done and now >= t0 + sent * period:
            r = FrameResult(args.camera, sent, time.time(), now, 640, 480, dets, {"infer": 1.0})
            sink.publish(r, build_payload(r, ctx))
            sent += 1
        st = sink.stats()
        if st["outbox_durable"] > durable:
            durable = st["outbox_durable"]
            emit(event="durable", seq=durable)
        sink.poll()
        time.sleep(min(period, 0.01))
    sink.close()
    emit(event="done", sent=sent, stats=sink.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
