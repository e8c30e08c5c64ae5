"""``python -m bench``: the same as ``eventwire bench`` (run from the repository root)."""

from __future__ import annotations

import typer

from eventwire_devkit.cli.bench import bench

app = typer.Typer(add_completion=False)
app.command()(bench)

if __name__ == "__main__":
    app()
