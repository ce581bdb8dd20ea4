"""Item-text normalisation shared by the sources."""

from __future__ import annotations

import html


def clean_field(value, unescape_html: bool = True) -> str:
    """A metadata field as one string: lists joined by spaces, HTML entities decoded, stripped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if str(v).strip())
    text = str(value)
    if unescape_html:
        text = html.unescape(text)
    return " ".join(text.split())
