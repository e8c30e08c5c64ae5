"""LocalKafkaCluster refuses careless arguments with a ValueError that says what to pass."""

from __future__ import annotations

from typing import Any

import pytest

from eventwire_devkit.kafka import LocalKafkaCluster


@pytest.mark.parametrize("nodes", ["3", 0, 1.5, True])
def test_nodes_must_be_an_int_of_at_least_one(nodes: Any) -> None:
    """``nodes="3"`` raised a bare TypeError from ``<``; 0 and True are refused too."""
    with pytest.raises(ValueError, match=r"nodes must be an int >= 1, not"):
        LocalKafkaCluster(nodes)


def test_jvm_args_as_one_string_is_refused_showing_the_list_to_pass() -> None:
    """``jvm_args="-Xmx512m"`` was split into characters and the JVM failed to start."""
    with pytest.raises(ValueError, match=r"pass \['-Xmx512m'\]"):
        LocalKafkaCluster(1, jvm_args="-Xmx512m")
