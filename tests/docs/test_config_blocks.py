"""Every config file the docs show (```toml, ```properties blocks) loads as eventwire reads it.

Each block is written to a file of its kind and read with ``KafkaConfig.from_file`` (and
``SchemaRegistryConfig.load`` when it has a ``[schema_registry]`` table), with the
variables its secret references name set, so a key eventwire would refuse, a malformed
line or a wrong reference fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire import KafkaConfig
from eventwire.schema_registry import SchemaRegistryConfig
from tests.docs import snippets

BLOCKS = snippets.config_blocks()
ENVIRON = {"KAFKA_PASSWORD": "example-password", "SR_USER_INFO": "user:example-password"}


def test_docs_show_config_files() -> None:
    """The pages have config blocks to check (a broken parser would find none)."""
    assert len(BLOCKS) >= 2, [f"{b.page}:{b.line}" for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_config_block_loads(
    block: snippets.Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block is a config file eventwire accepts, secrets resolved by reference."""
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / ("kafka.toml" if block.kind == "toml" else "client.properties")
    path.write_text(block.code, encoding="utf-8")
    config = KafkaConfig.from_file(path)
    assert config.bootstrap_servers
    if "schema_registry" in block.code:
        registry = SchemaRegistryConfig.load(path, env_prefix=None)
        assert registry.url.startswith("http")
