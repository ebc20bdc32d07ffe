"""The `/debug/` page for people: one self-contained HTML document, assembled once at import.

Its style and script live beside it in `static/` as real files (so editors and linters see
them) and are inlined here: the page needs no other request to draw itself, and works on a
machine without network access. The Content-Security-Policy allows exactly these inline
blocks, by hash, and requests to this server only, so nothing the page displays (task and
worker names come from the service) can ever run as script.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

_STATIC = Path(__file__).with_name("static")


def _read(name: str) -> str:
    return (_STATIC / name).read_text(encoding="utf-8")


def _hash_source(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


_STYLE = _read("debug.css")
_SCRIPT = _read("debug.js")

HTML = _read("debug.html").replace("/*STYLE*/", _STYLE).replace("/*SCRIPT*/", _SCRIPT).encode()

HEADERS = (
    (
        b"content-security-policy",
        (
            "default-src 'none'; "
            f"script-src {_hash_source(_SCRIPT)}; "
            f"style-src {_hash_source(_STYLE)}; "
            "connect-src 'self'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ).encode(),
    ),
    (b"referrer-policy", b"no-referrer"),
)
