"""The ``eventwire`` command line: ``broker``, ``demo`` and friends.

Each sub-command lives in its own module and registers on :data:`app`.
"""

from __future__ import annotations

import logging
import sys

import structlog
import typer

from eventwire.cli import bench as _bench
from eventwire.cli import broker as broker
from eventwire.cli import demo as _demo
from eventwire.cli import outbox as _outbox

app = typer.Typer(
    name="eventwire",
    help="Publish typed domain events to Apache Kafka; run a local cluster; verify it.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(broker.app, name="broker")
app.command(name="demo")(_demo.demo)
app.command(name="bench")(_bench.bench)
app.add_typer(_outbox.app, name="outbox")
app.add_typer(_outbox.dlq_app, name="dlq")


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info-level logs."),
) -> None:
    """Logs go to stderr (warnings and up unless -v), so stdout stays for results."""
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def main() -> None:
    """Console-script entry point."""
    app()
