"""`synthgen` commands: parse options, build configurations, call the library, own the files.

Stages are functions over records (synthgen.generate, synthgen.relabel); this module is the edge where
files are read and written, runs are resumed and manifests are kept. Heavy imports happen inside the
command that needs them, so `--help` answers at once.
"""

from __future__ import annotations

import typer

from synthgen.errors import run_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


def main() -> None:
    run_cli(app)
