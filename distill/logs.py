"""Logging for distill's library code: its warnings as `warning: ...` lines, the libraries' chatter kept out.

Both `distill` and `synthgen pipeline` train through the library, so the setup lives here, not in a CLI.
"""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so a replaced (or closed) stderr from an earlier run is never used."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def quiet_libraries() -> None:
    """Show distill's own warnings as `warning: ...`; keep the libraries' loading chatter out of the way."""
    logger = logging.getLogger("distill")
    handler = next((h for h in logger.handlers if h.get_name() == "distill-cli"), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name("distill-cli")
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
        logger.propagate = False
    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
