"""Text a ledger column can hold, and payloads kept exactly as they were sent.

NUL and unpaired surrogates are the characters no store takes: PostgreSQL refuses NUL in text,
and a lone surrogate has no UTF-8 form. A message field holding one is refused when the
payload is read (`plain_text`); a payload that holds one, or is not UTF-8 at all, is still
kept byte for byte (`encode_raw`: base64 with the `base64` marker), so nothing sent is lost.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["TEXT", "BASE64", "is_storable", "plain_text", "shown", "encode_raw", "decode_raw"]

TEXT = "text"
BASE64 = "base64"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    """True when `text` holds neither NUL nor an unpaired surrogate."""
    return _UNSTORABLE.search(text) is None


def plain_text(value: str) -> str:
    """A pydantic validator: `value` unchanged, or ValueError naming the first character no
    store can hold (a Python str holds a surrogate only when it is unpaired)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return value
    what = "NUL" if found.group() == "\x00" else "an unpaired surrogate"
    raise ValueError(f"text may not hold {what} (character {found.start()})")


def shown(text: str) -> str:
    """`text` with NUL and unpaired surrogates written as `\\uXXXX`, safe in any answer."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def encode_raw(payload: bytes | str) -> tuple[str, str]:
    """How a payload is stored: (text, "text") for UTF-8 text without NUL, else the exact
    bytes as (base64, "base64"); a str with lone surrogates counts as its surrogatepass
    UTF-8 bytes. `decode_raw` gives the bytes back."""
    if isinstance(payload, str):
        if is_storable(payload):
            return payload, TEXT
        payload = payload.encode("utf-8", "surrogatepass")
    else:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            return text, TEXT
    return base64.b64encode(payload).decode("ascii"), BASE64


def decode_raw(stored: str, encoding: str) -> bytes:
    """The exact bytes of a payload stored by `encode_raw`."""
    if encoding == TEXT:
        return stored.encode("utf-8", "surrogatepass")
    if encoding == BASE64:
        try:
            return base64.b64decode(stored, validate=True)
        except binascii.Error as error:
            raise ValueError(f"stored raw payload is not base64: {error}") from error
    raise ValueError(f"unknown raw payload encoding {encoding!r}")
