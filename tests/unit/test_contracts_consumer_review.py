"""Contracts review: stable set defaults (F07), a module exiting at import (F06), the
MessagePack note (F09)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from eventwire import event
from eventwire.cli._app import build_app
from eventwire.contracts import ContractError, build_asyncapi, collect_routes


@event(topic="orders", key="order_id", type_name="shop.tagged")
class Tagged(msgspec.Struct, frozen=True):
    order_id: str
    # 33, 1 and 17 share a hash slot: the set iterates as 33, 1, 17, not sorted
    numbers: frozenset[int] = frozenset({33, 1, 17})
    maybe: frozenset[int] | None = frozenset({33, 1, 17})
    nested: frozenset[frozenset[int]] = frozenset({frozenset({33, 1, 17})})
    ordered: tuple[int, ...] = (33, 1, 17)  # a sequence: its order is kept


class TestSetDefaultsAreSorted:
    def properties(self) -> dict[str, Any]:
        doc = build_asyncapi([Tagged])
        return doc["components"]["schemas"]["Tagged"]["properties"]  # type: ignore[no-any-return]

    def test_a_set_default_is_written_sorted(self) -> None:
        assert list(frozenset({33, 1, 17})) != [1, 17, 33]  # what made the output unstable
        props = self.properties()
        assert props["numbers"]["default"] == [1, 17, 33]
        assert props["maybe"]["default"] == [1, 17, 33]  # the default of a union with None
        assert props["nested"]["default"] == [[1, 17, 33]]
        assert list(props["ordered"]["default"]) == [33, 1, 17]

    def test_the_export_is_the_same_under_any_hash_seed(self, tmp_path: Path) -> None:
        (tmp_path / "tagged_mod.py").write_text(
            textwrap.dedent(
                """
                import msgspec
                from eventwire import event

                @event(topic="orders", key="order_id", type_name="shop.tagged")
                class Tagged(msgspec.Struct, frozen=True):
                    order_id: str
                    tags: frozenset[str] = frozenset({"alpha", "beta", "gamma", "delta"})
                """
            )
        )
        script = (
            "from eventwire.contracts import build_asyncapi, collect_routes, dump_document;"
            "print(dump_document(build_asyncapi(collect_routes(['tagged_mod']))))"
        )
        outputs = set()
        for seed in ("1", "2", "3", "4"):
            env = {
                **os.environ,
                "PYTHONHASHSEED": seed,
                "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
            }
            done = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            )
            outputs.add(done.stdout)
        assert len(outputs) == 1
        assert "- alpha\n" in next(iter(outputs))


@pytest.fixture
def exiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Modules that call sys.exit() when imported, and an old contract to check against."""
    (tmp_path / "exits_zero.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "exits_three.py").write_text("import sys\nsys.exit(3)\n")
    # A script's argparse run at import, given an option it does not know: it exits 2
    # whatever the test process's own sys.argv (which parse_args() would read).
    (tmp_path / "parses_args.py").write_text(
        "import argparse\nargparse.ArgumentParser().parse_args(['--no-such-option'])\n"
    )
    (tmp_path / "old.yaml").write_text('asyncapi: 3.0.0\ninfo: {title: x, version: "1"}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("exits_zero", "exits_three", "parses_args"):
        sys.modules.pop(name, None)


class TestAModuleExitingAtImport:
    def test_collect_routes_raises_contract_error(self, exiting: Path) -> None:
        with pytest.raises(ContractError) as info:
            collect_routes(["exits_zero"])
        assert "importing module 'exits_zero' called sys.exit(0)" in str(info.value)
        assert 'if __name__ == "__main__":' in str(info.value)

    @pytest.mark.parametrize("module", ["exits_zero", "exits_three", "parses_args"])
    @pytest.mark.parametrize("command", ["check", "export"])
    def test_the_command_exits_2_saying_so(self, exiting: Path, module: str, command: str) -> None:
        args = ["schema", command, module]
        if command == "check":
            args += ["--against", str(exiting / "old.yaml")]
        else:
            args += ["-o", str(exiting / "out.yaml")]
        result = CliRunner().invoke(build_app(), args)
        assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
        assert f"importing module {module!r} called sys.exit(" in result.stderr
        assert "compatible" not in result.stdout
        assert not (exiting / "out.yaml").exists()


class TestMsgpackNote:
    def test_a_msgpack_contract_says_how_the_wire_differs(self) -> None:
        doc = build_asyncapi([Tagged], content_type="application/msgpack")
        [message] = doc["components"]["messages"].values()
        note = message["x-eventwire-msgpack"]
        assert "JSON form" in note and "bin" in note and "timestamp extension" in note

    def test_a_json_contract_has_no_such_note(self) -> None:
        [message] = build_asyncapi([Tagged])["components"]["messages"].values()
        assert "x-eventwire-msgpack" not in message
