"""The ``eventwire`` Typer application: built-in commands plus the entry-point plug-ins.

An entry point in the ``eventwire.commands`` group named ``NAME`` adds
``eventwire NAME``: a :class:`typer.Typer` as a command group, any other callable as a
single command. A plug-in that fails to load is reported on stderr in one line and left
out, so the built-in commands keep working.

Every Typer app of the CLI is made with ``pretty_exceptions_show_locals=False``: a
crash prints its traceback without the frames' local variables (a DSN, a
config), whatever typer's default (True before typer 0.23). Plug-ins run under
the root app's setting.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import typer

from eventwire.cli import outbox as _outbox
from eventwire.cli import schema as _schema

#: The entry-point group other distributions register sub-commands in.
COMMANDS_GROUP = "eventwire.commands"


def _print_version(value: bool) -> None:
    """``--version``: print ``eventwire <version>`` (the distribution's) and exit 0."""
    if value:
        from eventwire import __version__  # noqa: PLC0415

        sys.stdout.write(f"eventwire {__version__}\n")
        raise typer.Exit(0)


def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info-level logs."),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the eventwire version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Logs go to stderr (warnings and up unless -v), so stdout stays for results."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def build_app() -> typer.Typer:
    """Return a new ``eventwire`` app: ``outbox``, ``dlq``, ``schema`` and every plug-in."""
    app = typer.Typer(
        rich_markup_mode=None,  # help texts mean [outbox] literally, not as markup
        name="eventwire",
        help="Publish typed domain events to Apache Kafka: inspect and relay the outbox, "
        "dead letters, event contracts (AsyncAPI), and the commands of installed plug-ins.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    app.callback()(_configure)
    app.add_typer(_outbox.app, name="outbox")
    app.add_typer(_outbox.dlq_app, name="dlq")
    app.add_typer(_schema.app, name="schema")
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            command = ep.load()
        except Exception as exc:  # a broken plug-in must not break the built-in commands
            sys.stderr.write(f"eventwire: skipping command {ep.name!r} ({ep.value}): {exc}\n")
            continue
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=ep.name)
        else:
            app.command(name=ep.name)(command)
    return app
