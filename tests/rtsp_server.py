"""A real RTSP server for tests: GstRtspServer on loopback serving an H.264/H.265 file.

Run as a subprocess so tests can SIGKILL, SIGSTOP and restart it on the same port::

    python tests/rtsp_server.py encode SRC DST [--codec h264|h265] [--frames N]
    python tests/rtsp_server.py serve --port P --media DST [--mount /cam] [--user U --password PW]

``encode`` transcodes a video (the shared vtest.avi) to MP4 with a key frame every 10
frames, so a client joining mid-stream decodes within a second. ``serve`` prints
``READY <port>`` once it listens; every client gets its own stream from the start of the
file, paced at its frame rate, and an end of stream at the end of the file.
:class:`RtspServer` drives that subprocess from a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, List, Optional
from urllib.parse import quote

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- in the subprocess
def _gst():  # type: ignore[no-untyped-def]
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    return Gst, GstRtspServer, GLib


def _make(Gst, factory: str, **props):  # type: ignore[no-untyped-def]
    element = Gst.ElementFactory.make(factory, None)
    if element is None:
        raise SystemExit(f"GStreamer element {factory} is missing")
    for key, value in props.items():
        element.set_property(key.replace("_", "-"), value)
    return element


def encode(src: Path, dst: Path, codec: str = "h264", frames: int = 0) -> None:
    """Transcode ``src`` to an MP4 at ``dst`` (written atomically)."""
    Gst, _, _ = _gst()
    tmp = dst.with_suffix(".part")
    pipe = Gst.Pipeline.new("encode")
    source = _make(Gst, "filesrc", location=str(src))
    decode = _make(Gst, "decodebin")
    chain = [_make(Gst, "videoconvert")]
    if frames:
        chain.insert(0, _make(Gst, "identity", eos_after=frames))
    if codec == "h264":
        chain += [_make(Gst, "x264enc", key_int_max=10, bframes=0), _make(Gst, "h264parse")]
        Gst.util_set_object_arg(chain[-2], "speed-preset", "ultrafast")
    else:
        chain += [_make(Gst, "x265enc", key_int_max=10), _make(Gst, "h265parse")]
        Gst.util_set_object_arg(chain[-2], "speed-preset", "ultrafast")
    chain += [_make(Gst, "mp4mux"), _make(Gst, "filesink", location=str(tmp))]
    for element in [source, decode, *chain]:
        pipe.add(element)
    source.link(decode)
    for up, down in zip(chain, chain[1:]):
        assert up.link(down), f"cannot link {up} to {down}"
    decode.connect("pad-added", lambda _d, pad: pad.link(chain[0].get_static_pad("sink")))
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(300 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        raise SystemExit(f"encoding failed: {msg.parse_error() if msg else 'timeout'}")
    os.replace(tmp, dst)


def serve(port: int, media: Path, mount: str, user: Optional[str], password: Optional[str]) -> None:
    Gst, GstRtspServer, GLib = _gst()
    codec = "h265" if "h265" in media.name else "h264"

    class Factory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc,name-defined]
        def do_create_element(self, url):  # type: ignore[no-untyped-def]
            bin_ = Gst.Bin.new("media")
            src = _make(Gst, "filesrc", location=str(media))
            demux = _make(Gst, "qtdemux")
            parse = _make(Gst, f"{codec}parse")
            pay = _make(Gst, f"rtp{codec}pay", name="pay0", pt=96, config_interval=-1)
            for element in (src, demux, parse, pay):
                bin_.add(element)
            src.link(demux)
            parse.link(pay)
            demux.connect("pad-added", lambda _d, pad: pad.link(parse.get_static_pad("sink")))
            return bin_

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = Factory()
    factory.set_shared(False)
    if user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    print(f"READY {port}", flush=True)
    GLib.MainLoop().run()


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    enc = sub.add_parser("encode")
    enc.add_argument("src", type=Path)
    enc.add_argument("dst", type=Path)
    enc.add_argument("--codec", choices=["h264", "h265"], default="h264")
    enc.add_argument("--frames", type=int, default=0)
    srv = sub.add_parser("serve")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--media", type=Path, required=True)
    srv.add_argument("--mount", default="/cam")
    srv.add_argument("--user")
    srv.add_argument("--password")
    args = ap.parse_args(argv)
    if args.cmd == "encode":
        encode(args.src, args.dst, args.codec, args.frames)
    else:
        serve(args.port, args.media, args.mount, args.user, args.password)


# --------------------------------------------------------------------------- in the test
class RtspServer:
    """The server subprocess: start, kill (SIGKILL), freeze (SIGSTOP), resume, restart on the same port."""

    def __init__(
        self,
        media: Path,
        port: int,
        mount: str = "/cam",
        user: Optional[str] = None,
        password: Optional[str] = None,
        log: Optional[Path] = None,
    ) -> None:
        self.media, self.port, self.mount = media, port, mount
        self.user, self.password = user, password
        self.log_path = log
        self.proc: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def url(self, user: Optional[str] = None, password: Optional[str] = None, query: str = "") -> str:
        cred = ""
        if user is not None:
            cred = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "") + "@"
        return f"rtsp://{cred}127.0.0.1:{self.port}{self.mount}{query}"

    def start(self, timeout: float = 20.0) -> RtspServer:
        cmd = [sys.executable, str(HERE), "serve", "--port", str(self.port), "--media", str(self.media)]
        cmd += ["--mount", self.mount]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""]
        if self.log_path is not None and self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept across restarts, closed by close()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log or subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"READY") or not line:
                break
        if not line.startswith(b"READY"):
            self.kill()
            raise RuntimeError(f"the RTSP server did not start on port {self.port}: {line!r}")
        return self

    def kill(self) -> None:
        """SIGKILL: the process vanishes without closing anything itself."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a frozen process must be able to die
                self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


def encoded_media(src: Path, dst: Path, codec: str = "h264", frames: int = 0) -> Path:
    """``src`` encoded for the server (cached at ``dst``), through a subprocess."""
    if not dst.exists():
        cmd = [sys.executable, str(HERE), "encode", str(src), str(dst), "--codec", codec]
        subprocess.run([*cmd, "--frames", str(frames)], check=True, timeout=600)
    return dst


if __name__ == "__main__":
    main()
