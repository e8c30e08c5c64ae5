"""``eventwire registry``: build and run a real local Schema Registry (Confluent API).

``up`` prints the registry's Confluent-compatible URL as the LAST line of stdout (notes go
to stderr), so ``SR=$(eventwire registry up --detach | tail -n1)`` works. A detached
registry is described by a state file, by default ``${XDG_CACHE_HOME:-~/.cache}/eventwire/
run/registry.json`` (override with ``--state-file`` or ``EVENTWIRE_REGISTRY_STATE``), which
``status`` and ``down`` read. The registry is Apicurio Registry, in memory (see
:mod:`eventwire_devkit.registry`).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from eventwire_devkit import strict_or_exit

app = typer.Typer(
    help="Run a real local Schema Registry (Apicurio, Confluent-compatible API).",
    no_args_is_help=True,
)
err = Console(stderr=True)

STATE_ENV = "EVENTWIRE_REGISTRY_STATE"


def default_state_file() -> Path:
    """Return the state file of ``registry up --detach`` (env ``EVENTWIRE_REGISTRY_STATE`` wins)."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser()
    from eventwire_devkit._kafka.runtime import run_dir  # noqa: PLC0415

    return run_dir() / "registry.json"


StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        envvar=STATE_ENV,
        help="State file of a detached registry [default: ~/.cache/eventwire/run/registry.json].",
    ),
]


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _alive(state: dict[str, Any]) -> bool:
    from eventwire_devkit.registry import is_registry_process  # noqa: PLC0415

    return is_registry_process(int(state["pid"]))


@app.command()
def fetch(
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if the registry cannot be built here (implied by "
            "EVENTWIRE_DEVKIT_STRICT=1, or CI=true).",
        ),
    ] = False,
) -> None:
    """Build the pinned registry once (with Maven) and print where it is.

    Without Java or Maven this only warns and exits 0; with --strict, or when
    EVENTWIRE_DEVKIT_STRICT=1, or CI=true, it exits 1.
    """
    from eventwire_devkit.registry import (  # noqa: PLC0415
        REGISTRY_VERSION,
        LocalRegistryError,
        ensure_registry_build,
    )

    env_strict = strict_or_exit()  # read first: a bad value is named before any work
    began = time.monotonic()
    try:
        with err.status(f"Checking the Apicurio Registry {REGISTRY_VERSION} build...") as status:
            app_dir = ensure_registry_build(progress=status.update)
    except LocalRegistryError as exc:
        err.print(f"[bold yellow]warning:[/] {exc}")
        if strict or env_strict:
            raise typer.Exit(1) from None
        err.print("Going on without a local Schema Registry (its tests will skip).")
        return
    err.print(f"Apicurio Registry {REGISTRY_VERSION} ready ({time.monotonic() - began:.1f}s).")
    typer.echo(str(app_dir))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; leave it running.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    timeout: Annotated[float, typer.Option(help="Startup timeout in seconds.")] = 60.0,
    state_file: StateOption = None,
) -> None:
    """Start a local registry; print its Confluent-compatible URL as the last stdout line.

    In the foreground it runs until Ctrl-C or SIGTERM. With --detach it returns once ready
    and records the registry in the state file for status/down.
    """
    from eventwire_devkit.registry import LocalRegistryError, LocalSchemaRegistry  # noqa: PLC0415

    path = state_file or default_state_file()
    if detach:
        state = _read_state(path)
        if state is not None and _alive(state):
            err.print(
                f"[bold red]error:[/] a detached registry already runs at {state['url']} "
                f"(state: {path}). Stop it with `eventwire registry down`."
            )
            raise typer.Exit(1)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        with err.status("Starting a local Schema Registry...") as status:
            registry = LocalSchemaRegistry(
                port=port or None,
                startup_timeout=timeout,
                die_with_parent=not detach,
                log_dir=(path.parent / "registry-logs") if detach else None,
                progress=status.update,
            )
            registry.start()  # (stops what it started if it fails or is interrupted)
    except LocalRegistryError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("Interrupted; stopped.")
        raise typer.Exit(130) from None
    err.print(
        f"Schema Registry ready in {registry.startup_seconds:.1f}s at [bold]{registry.url}[/] "
        f"(log: {registry.log_path})"
    )
    if detach:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "pid": registry.pid,
                    "url": registry.url,
                    "log": str(registry.log_path),
                    "started_at": time.time(),
                },
                indent=2,
            )
        )
        err.print(f"Detached (state: {path}). Stop it with `eventwire registry down`.")
        typer.echo(registry.url)
        return
    typer.echo(registry.url)
    err.print("Press Ctrl-C to stop.")
    code = 0
    try:
        while registry.running:
            time.sleep(0.5)
        err.print(f"[bold red]error:[/] the registry exited; see {registry.log_path}")
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        registry.close()
        err.print("Stopped.")
    if code:
        raise typer.Exit(code)


@app.command()
def status(state_file: StateOption = None) -> None:
    """Show the detached registry (exit 0 if it is ready, 1 otherwise)."""
    from eventwire_devkit.registry import _ready  # noqa: PLC0415

    path = state_file or default_state_file()
    state = _read_state(path)
    if state is None:
        err.print(f"No detached registry (no state file {path}).")
        raise typer.Exit(1)
    alive = _alive(state)
    base = str(state["url"]).split("/apis/", 1)[0]
    ready = alive and _ready(base + "/health/ready", 2.0)
    err.print(f"pid {state['pid']}: {'running' if alive else 'not running'}, ready: {ready}")
    err.print(f"log: {state.get('log')}")
    typer.echo(state["url"])
    if not ready:
        raise typer.Exit(1)


@app.command()
def down(
    state_file: StateOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before SIGKILL.")] = 10.0,
) -> None:
    """Stop the detached registry."""
    from eventwire_devkit.registry import is_registry_process  # noqa: PLC0415

    path = state_file or default_state_file()
    state = _read_state(path)
    if state is None:
        err.print(f"No detached registry (no state file {path}).")
        return
    pid = int(state["pid"])
    if is_registry_process(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_registry_process(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_registry_process(pid):
            os.kill(pid, signal.SIGKILL)
        err.print(f"Stopped the registry (pid {pid}).")
    else:
        err.print(f"The registry (pid {pid}) was not running.")
    path.unlink(missing_ok=True)
