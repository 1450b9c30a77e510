"""Turn GStreamer's error messages into one line naming the problem and the fix.

GStreamer's messages are generic ("Could not open resource for reading and writing.");
the detail is on the last line of the debug string ("Unauthorized (401)", "Failed to
connect."). Unknown errors keep GStreamer's own text.
"""

from __future__ import annotations

from typing import Tuple

# (text found in the debug string's last line, what it means and what to do)
_KNOWN: Tuple[Tuple[str, str], ...] = (
    ("Unauthorized", "the camera refused the credentials (401 Unauthorized): check the user name and password"),
    ("Forbidden", "the camera refused access (403 Forbidden): check the account's rights"),
    ("Not Found", "the camera has no stream at this path (404 Not Found): check the URL's path"),
    ("Failed to connect", "cannot connect (name does not resolve, refused or no route): check host and port"),
    ("Parse error", "the answer is not RTSP: check the URL's port and path"),
    ("Timeout", "no answer from the camera within the timeout: check the network and the camera"),
    ("No supported stream", "the stream has no video track"),
    ("not-negotiated", "the stream's format cannot be converted: check the source's caps and format settings"),
    ("Cannot identify device", "the V4L2 device does not exist"),
    ("Device or resource busy", "the device is in use by another program"),
)


def explain(message: str, debug: str, element: str) -> str:
    """One line for ``last_error`` and the log: the meaning when known, GStreamer's words otherwise."""
    detail = (debug or "").strip().splitlines()[-1:] or [""]
    for needle, meaning in _KNOWN:
        if needle in detail[0] or needle in message:
            return f"{meaning} [{element}: {detail[0] or message}]"
    extra = f": {detail[0]}" if detail[0] and detail[0] not in message and ".c(" not in detail[0] else ""
    return f"{message}{extra} [{element}]"
