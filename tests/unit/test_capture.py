"""Capture logic that needs no GStreamer: URL credentials, redaction, backoff, decoder choice."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest

from edge.capture.base import SourceStats
from edge.capture.diagnose import explain
from edge.capture.elements import decoder_plan
from edge.capture.redact import Redactor, redact_url, split_credentials
from edge.capture.supervisor import backoff_delay
from edge.errors import HardwareError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "location", "user", "password"),
    [
        ("rtsp://cam.local/stream", "rtsp://cam.local/stream", None, None),
        ("rtsp://admin@cam:554/s", "rtsp://cam:554/s", "admin", None),
        ("rtsp://admin:@cam/s", "rtsp://cam/s", "admin", ""),
        (
            "rtsp://us%40er:p%40ss%3Aw%2F%20!@10.0.0.2:8554/a?b=c&d=e",
            "rtsp://10.0.0.2:8554/a?b=c&d=e",
            "us@er",
            "p@ss:w/ !",
        ),
        ("rtsp://u:p@ss@cam/s", "rtsp://cam/s", "u", "p@ss"),  # an unencoded @ in the password
        ("rtsps://u:p@[fe80::1]:322/s", "rtsps://[fe80::1]:322/s", "u", "p"),
        ("rtsp://cam/path@odd", "rtsp://cam/path@odd", None, None),  # @ after the host is not userinfo
    ],
)
def test_split_credentials(url, location, user, password):
    split = split_credentials(url)
    assert (split.location, split.username, split.password) == (location, user, password)
    assert redact_url(url) == (url if user is None else location.replace("://", "://***@", 1))


def test_redactor_scrubs_raw_and_encoded_forms():
    redact = Redactor(["p@ss w/rd", None, ""])
    text = "rtsp://u:p%40ss%20w%2Frd@h failed; password p@ss w/rd; p%40ss%20w/rd"
    assert redact(text) == "rtsp://u:***@h failed; password ***; ***"


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    rng = random.Random(1)
    exact = [backoff_delay(n, 0.5, 30.0, 0.0, rng) for n in range(8)]
    assert exact == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    jittered = [backoff_delay(3, 0.5, 30.0, 0.2, rng) for _ in range(500)]
    assert min(jittered) >= 4.0 * 0.8 and max(jittered) <= 4.0 * 1.2
    assert len({round(d, 6) for d in jittered}) > 100  # spread, so cameras do not retry in lockstep
    assert max(backoff_delay(50, 0.5, 30.0, 0.2, rng) for _ in range(200)) <= 30.0
    assert backoff_delay(10_000, 0.5, 30.0, 0.0, rng) == 30.0  # no overflow after days of failures


def finder(*present):
    return lambda name: name in present


def test_decoder_choice_follows_the_element_registry(caplog):
    caplog.set_level(logging.INFO, logger="edge.capture.elements")
    jetson = finder("nvv4l2decoder", "nvvidconv", "avdec_h264", "avdec_h265")
    pc = finder("avdec_h264", "openh264dec", "avdec_h265")
    assert decoder_plan("auto", jetson).hardware
    assert decoder_plan("auto", jetson).decoder("h265") == "nvv4l2decoder"
    assert not decoder_plan("software", jetson).hardware
    assert not decoder_plan("auto", pc).hardware
    assert decoder_plan("auto", pc).decoder("h264") == "avdec_h264"
    assert decoder_plan("auto", finder("openh264dec")).decoder("h264") == "openh264dec"
    with pytest.raises(HardwareError, match="nvv4l2decoder"):
        decoder_plan("hardware", pc)
    with pytest.raises(HardwareError):
        decoder_plan("hardware", finder("nvv4l2decoder"))  # no nvvidconv: cannot leave NVMM
    for _ in range(3):
        decoder_plan("auto", pc)
    choices = [r.getMessage() for r in caplog.records if "video decoding" in r.getMessage()]
    assert len(choices) == len(set(choices))  # each choice is logged once per process


@pytest.mark.parametrize(
    ("message", "debug", "expected"),
    [
        ("Unauthorized", "gstrtspsrc.c(6899): gst_rtspsrc_send ():\nUnauthorized (401)", "check the user name"),
        (
            "Could not open resource for reading and writing.",
            "x.c(1): f ():\nFailed to connect. (Generic error)",
            "check host and port",
        ),
        ("Not found", "x.c(1): f ():\nNot Found (404)", "check the URL's path"),
        ("Internal data stream error.", "x.c(1): f ():\nstreaming stopped, reason not-negotiated (-4)", "caps"),
    ],
)
def test_known_gstreamer_errors_are_explained(message, debug, expected):
    line = explain(message, debug, "rtspsrc0")
    assert expected in line and "rtspsrc0" in line and "\n" not in line


def test_unknown_errors_keep_gstreamer_words():
    assert explain("Something odd.", "", "src") == "Something odd. [src]"
    assert explain("Something odd.", "file.c(3): fn ():\n/GstPipeline:p/X:y:\nmore detail", "src") == (
        "Something odd.: more detail [src]"
    )


def test_stats_snapshot_is_json_ready():
    snap = SourceStats().as_dict(now=0.0)
    assert snap["state"] == "connecting" and snap["last_frame_age_s"] is None
    assert {"frames", "dropped", "reconnects", "stalls", "loops", "last_error"} <= set(snap)


def test_open_source_without_gstreamer_names_what_to_install(tmp_path):
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'gi':
            raise ImportError('No module named gi')
sys.meta_path.insert(0, Block())
from edge.capture import open_source
from edge.config.model import CameraConfig
from edge.errors import HardwareError
try:
    open_source(CameraConfig(name='c', source={'kind': 'test'}), print)
except HardwareError as exc:
    print('ERROR', exc.exit_code, exc)
assert 'gi' not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR 6 GStreamer is not available from Python")
    assert "pygobject" in out.stdout and "tools/setup.sh" in out.stdout
