"""The official AsyncAPI CLI (``@asyncapi/cli`` from npm), installed once, to validate documents.

:func:`ensure_asyncapi_cli` installs the pinned :data:`ASYNCAPI_CLI_VERSION` -- the whole
dependency tree pinned by the ``package-lock.json`` shipped in ``_asyncapi/`` -- with
``npm install --no-audit --no-fund --ignore-scripts --prefix DIR`` into
``${XDG_CACHE_HOME:-~/.cache}/eventwire/asyncapi-cli/<version>/`` (override:
``EVENTWIRE_ASYNCAPI_CLI_DIR``), and returns the path of its ``asyncapi`` executable. The
install goes into a temporary directory renamed into place when complete, under a file
lock, so a killed or concurrent install never leaves half a tree. It needs Node.js 20+
and npm (about 2 minutes and 1.5 GB the first time; nothing after).

4.1.1 is the newest release that runs on Node 20 (5.x and 6.x require Node 24).

:func:`validate` runs ``asyncapi validate FILE --fail-severity warn`` with the CLI's
phoning home switched off (:func:`quiet_env`): no usage analytics (a config file saying
so, and ``CI=true``), no update check, no install scripts (one of them is a tracker).

``python -m eventwire_devkit.asyncapi`` installs it and prints the path (``make test``
runs it). Without node or npm it prints why and exits 0 -- or 1 in strict mode
(``EVENTWIRE_DEVKIT_STRICT=1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from eventwire_devkit import strict_or_exit

__all__ = [
    "ASYNCAPI_CLI_VERSION",
    "CLI_DIR_ENV",
    "AsyncAPICliUnavailableError",
    "Validation",
    "asyncapi_cli_dir",
    "ensure_asyncapi_cli",
    "quiet_env",
    "validate",
]

#: The pinned ``@asyncapi/cli`` release (must match ``_asyncapi/package.json``).
ASYNCAPI_CLI_VERSION = "4.1.1"
#: Environment variable naming the install directory (instead of the per-user cache).
CLI_DIR_ENV = "EVENTWIRE_ASYNCAPI_CLI_DIR"
#: The oldest Node.js major version the pinned CLI runs on.
MIN_NODE_MAJOR = 20
#: How long one ``npm install`` may take.
INSTALL_TIMEOUT_S = 1800.0

_STAMP = ".eventwire-installed"


class AsyncAPICliUnavailableError(RuntimeError):
    """The AsyncAPI CLI cannot be installed or run here (no node/npm, npm failed)."""


@dataclass(frozen=True, slots=True)
class Validation:
    """What ``asyncapi validate`` said: ``ok`` (exit status 0) and its output."""

    ok: bool
    returncode: int
    output: str


def asyncapi_cli_dir(version: str = ASYNCAPI_CLI_VERSION) -> Path:
    """The install directory: ``$EVENTWIRE_ASYNCAPI_CLI_DIR``, else the per-user cache."""
    override = os.environ.get(CLI_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "eventwire" / "asyncapi-cli" / version


def _bin(directory: Path) -> Path:
    return directory / "node_modules" / ".bin" / "asyncapi"


def _find_node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise AsyncAPICliUnavailableError(
            f"the AsyncAPI CLI needs Node.js {MIN_NODE_MAJOR}+ and npm: {missing} not on PATH"
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise AsyncAPICliUnavailableError(f"cannot run {node} --version: {exc}") from exc
    match = re.match(r"v?(\d+)", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise AsyncAPICliUnavailableError(
            f"the AsyncAPI CLI {ASYNCAPI_CLI_VERSION} needs Node.js {MIN_NODE_MAJOR}+, "
            f"found {version or 'an unknown version'} at {node}"
        )
    return node, npm


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_asyncapi_cli(progress: Callable[[str], None] | None = None) -> Path:
    """Install the pinned AsyncAPI CLI once; return the path of its ``asyncapi`` executable.

    Raises:
        AsyncAPICliUnavailableError: node or npm is missing or too old, or npm failed
            (its output's tail is in the message).
    """
    target = asyncapi_cli_dir()
    if (target / _STAMP).is_file() and _bin(target).exists():
        return _bin(target)
    _, npm = _find_node_and_npm()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if (target / _STAMP).is_file() and _bin(target).exists():
            return _bin(target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            files = resources.files("eventwire_devkit") / "_asyncapi"
            for name in ("package.json", "package-lock.json"):
                (work / name).write_bytes((files / name).read_bytes())
            if progress is not None:
                progress(f"Installing @asyncapi/cli {ASYNCAPI_CLI_VERSION} with npm...")
            started = time.monotonic()
            command = [
                *(npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"),
                *("--no-update-notifier", "--loglevel=error", "--prefix", str(work)),
            ]
            try:
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                    env=quiet_env(work),
                    cwd=work,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise AsyncAPICliUnavailableError(f"npm install failed: {exc}") from exc
            if proc.returncode != 0 or not _bin(work).exists():
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
                raise AsyncAPICliUnavailableError(
                    f"npm install of @asyncapi/cli {ASYNCAPI_CLI_VERSION} failed "
                    f"(exit {proc.returncode}):\n{tail}"
                )
            (work / _STAMP).write_text(
                json.dumps({"seconds": round(time.monotonic() - started, 1)}) + "\n"
            )
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return _bin(target)


def quiet_env(directory: Path | None = None) -> dict[str, str]:
    """The environment to run npm and the AsyncAPI CLI in: no analytics, no update checks.

    The CLI sends usage metrics unless its analytics config file says
    ``analyticsEnabled: "false"`` or ``CI=true``; this writes such a file into
    ``directory`` (the install directory by default) and points
    ``ASYNCAPI_METRICS_CONFIG_PATH`` at it, so ``~/.asyncapi-analytics`` is never
    created either.
    """
    directory = directory or asyncapi_cli_dir()
    directory.mkdir(parents=True, exist_ok=True)
    analytics = directory / "analytics.json"
    if not analytics.is_file():
        analytics.write_text(
            json.dumps(
                {"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "eventwire"}
            )
        )
    env = dict(os.environ)
    env.update(
        {
            "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics),
            "CI": "true",
            "ASYNCAPI_SKIP_NEW_VERSION_CHECK": "true",
            "NO_UPDATE_NOTIFIER": "1",
            "NPM_CONFIG_UPDATE_NOTIFIER": "false",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "FORCE_COLOR": "0",
        }
    )
    return env


def validate(path: str | Path, *, cli: Path | None = None, timeout: float = 300.0) -> Validation:
    """Run ``asyncapi validate PATH --fail-severity warn``: ok unless it finds a warning or error.

    Raises:
        AsyncAPICliUnavailableError: the CLI cannot be installed (see
            :func:`ensure_asyncapi_cli`).
    """
    executable = cli or ensure_asyncapi_cli()
    proc = subprocess.run(
        [str(executable), "validate", str(path), "--fail-severity", "warn"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=quiet_env(executable.parents[2]),
        stdin=subprocess.DEVNULL,
    )
    return Validation(proc.returncode == 0, proc.returncode, proc.stdout + proc.stderr)


def main() -> None:
    """``python -m eventwire_devkit.asyncapi``: install the CLI and print its path."""
    strict = strict_or_exit()  # read first: a bad value is named before any work
    started = time.monotonic()
    try:
        path = ensure_asyncapi_cli(progress=lambda line: print(line, file=sys.stderr))
    except AsyncAPICliUnavailableError as exc:
        print(f"warning: AsyncAPI CLI unavailable: {exc}", file=sys.stderr)
        raise SystemExit(1 if strict else 0) from None
    print(
        f"AsyncAPI CLI {ASYNCAPI_CLI_VERSION} ready ({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    print(path)


if __name__ == "__main__":
    main()
