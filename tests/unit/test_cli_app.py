"""The ``eventwire`` Typer app: a crash never prints frame locals, whatever typer's default."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SECRET = "S3cr3t-in-a-local"

#: A CLI process on a typer whose default is to show locals (as before typer 0.23), whose
#: outbox crashes with an unexpected error while a frame holds the DSN.
_CRASHING_CLI = textwrap.dedent(
    f"""
    import sys

    import typer

    _init = typer.Typer.__init__

    def _old_default(self, *args, **kwargs):
        kwargs.setdefault("pretty_exceptions_show_locals", True)  # typer < 0.23
        _init(self, *args, **kwargs)

    typer.Typer.__init__ = _old_default

    import eventwire.outbox.postgres as postgres

    class CrashingOutbox:
        def __init__(self, dsn, **kwargs):
            self.dsn = dsn

        def status(self):
            raise RuntimeError("unexpected crash")

        def close(self):
            pass

    postgres.PostgresOutbox = CrashingOutbox

    from eventwire.cli import main

    import os

    os.environ["DSN"] = "postgresql://app:{SECRET}@db/app"
    sys.argv = ["eventwire", "outbox", "status", "--postgres-env", "DSN"]
    main()
    """
)


def test_a_crash_prints_a_traceback_without_frame_locals_even_on_an_older_typer() -> None:
    """An unexpected exception prints typer's traceback, but not the frames' local
    variables (here the DSN with its password), even where typer would show them by default."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"TYPER_STANDARD_TRACEBACK", "_TYPER_STANDARD_TRACEBACK"}
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_CLI],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**env, "COLUMNS": "250"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: unexpected crash" in proc.stderr  # typer's rich traceback was shown
    assert SECRET not in proc.stdout + proc.stderr


def test_help_shows_bracketed_words_literally() -> None:
    """`[outbox]` and `[stdout]` in help texts are words, not rich markup that vanishes."""
    from typer.testing import CliRunner

    from eventwire.cli._app import build_app

    runner = CliRunner()
    status = runner.invoke(build_app(), ["outbox", "status", "--help"], env={"COLUMNS": "200"})
    export = runner.invoke(build_app(), ["schema", "export", "--help"], env={"COLUMNS": "200"})
    assert "Config file whose [outbox] table names the outbox" in " ".join(status.stdout.split())
    assert "else YAML) [stdout]" in " ".join(export.stdout.split())
