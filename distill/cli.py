"""`distill` commands: train an encoder from a recipe, evaluate one on BEIR-format data."""

from __future__ import annotations

import typer

from synthgen.errors import run_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


def main() -> None:
    run_cli(app)
