"""``eventwire schema export|check``: the AsyncAPI contract of the routed events, and its evolution.

``MODULE`` is an importable module (``myapp.events``: every ``@event`` class in it) or
``module:NAME`` (an ``@event`` class, or a ``routes={Cls: Route(...)}`` mapping). The
modules are imported as they are: run the command where they are importable (an
installed package, or ``PYTHONPATH=src``).

* ``export`` writes the AsyncAPI 3.0 document (YAML; JSON when ``-o`` ends in ``.json``)
  to ``-o FILE`` or stdout. Exit 0, or 2 when a module cannot be imported or an event
  type cannot be described.
* ``check --against FILE --mode MODE`` compares the current types with an earlier
  export (for the ``_TRANSITIVE`` modes: several ``--against`` files, or a directory of
  versions). Exit 0 when compatible, 1 listing every break on stdout, 2 when a file or
  module cannot be read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from eventwire.cli._text import console, one_line, printable
from eventwire.contracts import (
    ContractError,
    Mode,
    RoutedType,
    build_asyncapi,
    check_compatible,
    collect_routes,
    dump_document,
)

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,  # help texts mean [outbox] literally, not as markup
    help="Event contracts: export an AsyncAPI 3.0 document of the routed events, and check "
    "a change against an earlier export (Schema Registry compatibility modes).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
err = console(stderr=True)

ModulesArg = Annotated[
    list[str],
    typer.Argument(
        metavar="MODULE...",
        help="Modules to collect @event classes from, or module:NAME (an @event class "
        "or a routes mapping {Cls: Route(...)}).",
    ),
]
CodecOpt = Annotated[
    str,
    typer.Option("--codec", help="The publisher's codec: json or msgpack (the content type)."),
]
SourceOpt = Annotated[
    str | None,
    typer.Option("--source", help="The publisher's source= (ce_source), if it is fixed."),
]

_CONTENT_TYPES = {"json": "application/json", "msgpack": "application/msgpack"}


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(
        printable(f"eventwire: {one_line(message)}"),
        style="red",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(code)


def _content_type(codec: str) -> str:
    try:
        return _CONTENT_TYPES[codec]
    except KeyError:
        raise _fail(f"--codec must be json or msgpack, got {codec!r}") from None


def _collect(modules: list[str]) -> list[RoutedType]:
    """The routed event types of ``modules``, importable from the current directory too.

    A console script does not put the current directory on ``sys.path`` (``python -m``
    does), so ``eventwire schema export myapp.events`` run next to ``myapp/`` would not
    find it; the directory goes first, as uvicorn's ``--app-dir`` does by default.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return collect_routes(modules)


@app.command()
def export(  # noqa: PLR0917 - typer maps each parameter to an option
    modules: ModulesArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (.json: JSON, else YAML) [stdout]."),
    ] = None,
    title: Annotated[str, typer.Option("--title", help="info.title")] = "eventwire events",
    api_version: Annotated[
        str, typer.Option("--api-version", help="info.version: this contract's version.")
    ] = "1.0.0",
    codec: CodecOpt = "json",
    source: SourceOpt = None,
) -> None:
    """Write the AsyncAPI 3.0 document of every routed event type in MODULE...."""
    content_type = _content_type(codec)
    try:
        routed = _collect(modules)
        document = build_asyncapi(
            routed, title=title, version=api_version, content_type=content_type, source=source
        )
        text = dump_document(document, output)
    except (ContractError, OSError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # a RoutingError from a class's route, an import side effect
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        err.print(
            printable(
                f"wrote {output}: {len(routed)} message(s) on {len(document['channels'])} topic(s)"
            ),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def check(
    modules: ModulesArg,
    against: Annotated[
        list[Path],
        typer.Option(
            "--against",
            help="An earlier export (YAML or JSON), or a directory of them; repeat it "
            "(oldest first) for the _TRANSITIVE modes.",
        ),
    ],
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            case_sensitive=False,
            help="BACKWARD: new consumers read old events; FORWARD: old consumers read new "
            "events; FULL: both; _TRANSITIVE: against every earlier version.",
        ),
    ] = Mode.BACKWARD,
    codec: CodecOpt = "json",
) -> None:
    """Check the current event types in MODULE... against an earlier export; exit 1 on a break."""
    content_type = _content_type(codec)
    try:
        routed = _collect(modules)
        current = build_asyncapi(routed, content_type=content_type)
        breaks = check_compatible(against if len(against) > 1 else against[0], current, mode)
    except (ContractError, OSError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    where = ", ".join(str(p) for p in against)
    if not breaks:
        typer.echo(f"compatible ({mode.value}) with {where}: {len(routed)} message(s) checked")
        return
    typer.echo(printable(f"{len(breaks)} incompatible change(s) ({mode.value}) against {where}:"))
    for item in breaks:
        typer.echo(printable(f"- {item}"))
    raise typer.Exit(1)
