"""Passwords inside database URLs: masked wherever a URL, or a message about it, is shown.

A PostgreSQL URL may carry a password in two places, the user info
(`postgresql://user:secret@host/db`) and the `password` query parameter. Configuration
output (`check-config`), log lines and error messages show the URL with both masked, and
any message that might quote the URL (a driver's complaint about a malformed one, say) has
the password taken out before it is shown.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

MASK = "***"


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***` (the rest kept, for the operator to check)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # too malformed to tell where a password would be: show nothing of it
    masked = url
    if _raw_password(parts) is not None:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        masked = masked.replace(f"//{parts.netloc}", f"//{user}:{MASK}@{hosts}", 1)
    if any(_is_password(item) for item in parts.query.split("&")):
        query = "&".join(
            f"{item.partition('=')[0]}={MASK}" if _is_password(item) else item
            for item in parts.query.split("&")
        )
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


def redact(text: str, url: str) -> str:
    """`text` with every password of `url` (as written, and decoded) replaced by `***`."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found = [_raw_password(parts)]
    found += [item.partition("=")[2] for item in parts.query.split("&") if _is_password(item)]
    return {form for raw in found if raw for form in (raw, unquote(raw))}


def _raw_password(parts: SplitResult) -> str | None:
    """The password as written in the user info (`urlsplit` would not decode it anyway)."""
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2]


def _is_password(query_item: str) -> bool:
    return unquote(query_item.partition("=")[0]).strip().lower() == "password"
