"""The ``eventwire`` command line (the ``cli`` extra): ``outbox`` and ``dlq``, plus plug-ins.

:func:`main` is the console script. Without the extra's typer and rich it prints one
line naming the extra and exits 1. Other distributions add sub-commands through the
``eventwire.commands`` entry-point group (see :mod:`eventwire.cli._app`); the
``eventwire-devkit`` distribution adds ``broker``, ``demo`` and ``bench`` that way.
"""

from __future__ import annotations

import sys

#: The one line printed when the ``cli`` extra is not installed.
MISSING_EXTRA = (
    "eventwire: the command line needs the 'cli' extra: pip install 'eventwire[cli]' "
    "(missing: {missing})"
)


def main() -> None:
    """Console-script entry point: run the CLI, or exit 1 naming the missing ``cli`` extra."""
    try:
        import rich  # noqa: F401, PLC0415
        import typer  # noqa: F401, PLC0415
    except ImportError as exc:
        sys.stderr.write(MISSING_EXTRA.format(missing=exc.name or exc) + "\n")
        raise SystemExit(1) from None
    from eventwire.cli._app import build_app  # noqa: PLC0415

    build_app()()
