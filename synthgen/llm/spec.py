"""What of an --llm spec may be written down: credentials in a URL are masked before a manifest or a message
carries the spec, so a run folder shared with others does not carry them (the server still gets them)."""

from __future__ import annotations

import re


def public_spec(spec: str | None) -> str | None:
    """The spec (or URL) with `user:secret@` masked as `***@`."""
    return None if spec is None else re.sub(r"(://)[^/@\s]*@", r"\1***@", spec)
