"""The devkit's sub-commands of ``eventwire``: ``broker``, ``demo`` and ``bench``.

They are registered in the ``eventwire.commands`` entry-point group (see
``devkit/pyproject.toml``), which the runtime ``eventwire`` command reads at start-up:
a :class:`typer.Typer` becomes a command group, a function a single command.
"""
