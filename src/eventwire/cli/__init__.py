"""The ``eventwire`` command line: ``broker``, ``demo`` and friends.

Each sub-command lives in its own module and registers on :data:`app`.
"""

from __future__ import annotations

import typer

from eventwire.cli import broker as broker

app = typer.Typer(
    name="eventwire",
    help="Publish typed domain events to Apache Kafka; run a local cluster; verify it.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(broker.app, name="broker")


def main() -> None:
    """Console-script entry point."""
    app()
