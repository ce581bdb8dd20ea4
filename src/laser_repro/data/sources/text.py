"""Item-text normalisation shared by the sources."""

from __future__ import annotations

import html


def clean_field(value, unescape_html: bool = True, where: str = "a metadata field") -> str:
    """A metadata field as one string: lists joined by spaces, HTML entities decoded, stripped. Anything but text or a
    list of texts (a number, a flag, an object) is an error naming ``where``: it became "123" or "True" in prompts."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: {value!r:.120} holds something other than text; expected text or a list of texts")
        value = " ".join(v for v in value if v.strip())
    if not isinstance(value, str):
        raise ValueError(f"{where}: {value!r:.120} is {type(value).__name__}; expected text or a list of texts")
    text = value
    if unescape_html:
        text = html.unescape(text)
    return " ".join(text.split())
