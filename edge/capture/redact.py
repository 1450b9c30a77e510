"""Credentials in stream URLs: split them off for the element, and keep them out of logs.

``rtsp://user:p%40ss@cam/stream`` becomes the location ``rtsp://cam/stream`` plus the
decoded user name and password, which are given to ``rtspsrc`` as properties; every log
line shows ``rtsp://***@cam/stream``. :class:`Redactor` also scrubs the secret values (raw
and percent-encoded) from any text, such as GStreamer's own error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple
from urllib.parse import quote, unquote

MASK = "***"


@dataclass(frozen=True)
class SplitUrl:
    location: str  # the URL without credentials
    username: Optional[str]
    password: Optional[str]


def _parts(url: str) -> Tuple[str, str, str]:
    """(scheme://, userinfo, rest) of ``url``; userinfo is empty when there is none."""
    scheme, sep, tail = url.partition("://")
    if not sep:
        return "", "", url
    end = len(tail)
    for ch in "/?#":
        i = tail.find(ch)
        if i != -1:
            end = min(end, i)
    authority = tail[:end]
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return scheme + sep, "", tail
    return scheme + sep, userinfo, hostport + tail[end:]


def split_credentials(url: str) -> SplitUrl:
    """Take ``user:password@`` out of a URL, percent-decoding both."""
    prefix, userinfo, rest = _parts(url)
    if not userinfo:
        return SplitUrl(url, None, None)
    user, colon, password = userinfo.partition(":")
    return SplitUrl(prefix + rest, unquote(user), unquote(password) if colon else None)


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``***@``."""
    prefix, userinfo, rest = _parts(url)
    return prefix + MASK + "@" + rest if userinfo else url


class Redactor:
    """Replaces secret values (as given and percent-encoded) in text with ``***``."""

    def __init__(self, secrets: Iterable[Optional[str]] = ()) -> None:
        self._needles: List[str] = []
        self.add(*secrets)

    def add(self, *secrets: Optional[str]) -> None:
        for s in secrets:
            if not s:
                continue
            for form in {s, quote(s, safe=""), quote(s)}:
                if form not in self._needles:
                    self._needles.append(form)
        self._needles.sort(key=len, reverse=True)  # longest first: an encoded form contains the raw one

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, MASK)
        return text
