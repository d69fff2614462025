"""Command-line options that both CLIs (`synthgen`, `distill`) take, declared once so they cannot drift apart.

A CLI module of its own: the library modules that read the machine (`synthgen.machine`) must not import typer.
"""

from __future__ import annotations

import typer

THREADS_OPTION = typer.Option(0, "--threads", min=0, help="Torch threads for this command (0: one per physical core this process may use).")
