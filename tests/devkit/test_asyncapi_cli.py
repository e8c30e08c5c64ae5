"""The devkit's AsyncAPI CLI installer: where it installs, what it needs, and that it stays quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire_devkit import asyncapi
from eventwire_devkit.pytest_plugin import unavailable


def test_the_install_directory_is_per_version_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """~/.cache/eventwire/asyncapi-cli/<version> (XDG_CACHE_HOME honoured), or the override."""
    monkeypatch.delenv(asyncapi.CLI_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "eventwire" / "asyncapi-cli" / asyncapi.ASYNCAPI_CLI_VERSION
    assert asyncapi.asyncapi_cli_dir() == expected
    monkeypatch.setenv(asyncapi.CLI_DIR_ENV, str(tmp_path / "here"))
    assert asyncapi.asyncapi_cli_dir() == tmp_path / "here"


def test_without_node_it_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No node/npm on PATH: AsyncAPICliUnavailableError naming them (tests then skip, or fail
    in strict mode), and nothing is installed."""
    monkeypatch.setenv(asyncapi.CLI_DIR_ENV, str(tmp_path / "cli"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(asyncapi.AsyncAPICliUnavailableError, match="node and npm not on PATH"):
        asyncapi.ensure_asyncapi_cli()
    assert not (tmp_path / "cli").exists()


def test_the_pinned_version_is_the_lockfiles(tmp_path: Path) -> None:
    """package.json and package-lock.json pin exactly ASYNCAPI_CLI_VERSION."""
    import json
    from importlib import resources

    files = resources.files("eventwire_devkit") / "_asyncapi"
    package = json.loads((files / "package.json").read_text())
    lock = json.loads((files / "package-lock.json").read_text())
    assert package["dependencies"] == {"@asyncapi/cli": asyncapi.ASYNCAPI_CLI_VERSION}
    cli = lock["packages"]["node_modules/@asyncapi/cli"]
    assert cli["version"] == asyncapi.ASYNCAPI_CLI_VERSION


def test_the_cli_runs_without_analytics_or_update_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """validate() runs with analytics disabled in a config file of the install (never
    ~/.asyncapi-analytics), CI=true and no update check."""
    try:
        cli = asyncapi.ensure_asyncapi_cli()
    except asyncapi.AsyncAPICliUnavailableError as exc:
        unavailable(f"AsyncAPI CLI unavailable: {exc}")
    env = asyncapi.quiet_env(cli.parents[2])
    assert env["CI"] == "true" and env["ASYNCAPI_SKIP_NEW_VERSION_CHECK"] == "true"
    config = Path(env["ASYNCAPI_METRICS_CONFIG_PATH"])
    assert '"analyticsEnabled": "false"' in config.read_text()
    monkeypatch.setenv("HOME", str(tmp_path))
    document = tmp_path / "min.yaml"
    document.write_text("asyncapi: 3.0.0\ninfo:\n  title: t\n  version: 1.0.0\n")
    result = asyncapi.validate(document, cli=cli)
    assert result.ok, result.output
    assert not (tmp_path / ".asyncapi-analytics").exists()
    assert "anonymously tracks" not in result.output
