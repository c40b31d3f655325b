"""Text a ledger column can hold, and payloads kept exactly as they were sent.

NUL and unpaired surrogates are the characters no store takes: PostgreSQL refuses NUL in text,
and a lone surrogate has no UTF-8 form. A message field holding one is refused when the
payload is read (`PLAIN_PATTERN`, `text_refusal`); a payload that holds one, or is not UTF-8 at
all, is still kept byte for byte (`encode_raw`: base64 with the `base64` marker), so nothing
sent is lost.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TEXT",
    "BASE64",
    "PLAIN_PATTERN",
    "is_storable",
    "text_refusal",
    "shown",
    "encode_raw",
    "decode_raw",
]

TEXT = "text"
BASE64 = "base64"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    """True when `text` holds neither NUL nor an unpaired surrogate."""
    if text.isascii():  # known without a scan (CPython keeps it), and the common case
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


# The pattern a model's text is held to, checked by pydantic itself (its Rust regex: a
# validator in Python cost each field half a microsecond). It refuses NUL; a str holding an
# unpaired surrogate, which has no UTF-8 form, the regex refuses as `string_unicode`, and JSON
# text escaping one is not JSON pydantic reads.
PLAIN_PATTERN = r"^[^\x00]*$"


def text_refusal(error: Mapping[str, Any]) -> str | None:
    """The sentence for a pydantic error (`ValidationError.errors()`) that refused text no
    store can hold, naming the first such character; None for any other error."""
    kind = error["type"]
    pattern = (error.get("ctx") or {}).get("pattern")
    if kind != "string_unicode" and not (
        kind == "string_pattern_mismatch" and pattern == PLAIN_PATTERN
    ):
        return None
    value = error.get("input")
    found = _UNSTORABLE.search(value) if isinstance(value, str) else None
    if found is None:
        return None
    what = "NUL" if found.group() == "\x00" else "an unpaired surrogate"
    return f"text may not hold {what} (character {found.start()})"


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
