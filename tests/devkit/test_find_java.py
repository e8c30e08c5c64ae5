"""find_java: which java runs Kafka, and what the error says when none can.

A set ``JAVA_HOME`` is the choice (as for Maven and Kafka's own scripts): its java or an
error naming it, never silently the java on PATH instead. Fake ``java`` scripts stand in
for real ones, so no Java is needed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventwire_devkit._kafka import jars
from eventwire_devkit.kafka import JavaNotFoundError


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    jars._probe_java.cache_clear()
    yield
    jars._probe_java.cache_clear()


def fake_java(home: Path, major: int) -> Path:
    """``home/bin/java`` that reports Java ``major`` as ``java -version`` does."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{major}.0.2\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    return java


def use(monkeypatch: pytest.MonkeyPatch, java_home: Path | None, path: Path) -> None:
    if java_home is None:
        monkeypatch.delenv("JAVA_HOME", raising=False)
    else:
        monkeypatch.setenv("JAVA_HOME", str(java_home))
    monkeypatch.setenv("PATH", str(path))


def test_a_java_home_that_does_not_exist_says_so_and_that_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "/nonexistent/bin/java is not executable" and "or set JAVA_HOME", which the
    user had done, and nothing about PATH."""
    use(monkeypatch, tmp_path / "no-jdk", tmp_path / "empty-path")
    with pytest.raises(JavaNotFoundError) as caught:
        jars.find_java()
    message = str(caught.value)
    assert f"JAVA_HOME={tmp_path / 'no-jdk'} gives no usable java" in message
    assert f"{tmp_path / 'no-jdk' / 'bin' / 'java'} does not exist" in message
    assert "no `java` on PATH either" in message
    assert "not executable" not in message


def test_a_wrong_java_home_is_refused_even_with_a_java_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong JAVA_HOME was silently ignored for the java on PATH; it is an error naming
    both, since Maven (which fetches the jars) would not run with it either."""
    on_path = fake_java(tmp_path / "path-jdk", 17)
    use(monkeypatch, tmp_path / "no-jdk", on_path.parent)
    with pytest.raises(JavaNotFoundError) as caught:
        jars.find_java()
    message = str(caught.value)
    assert "does not exist" in message
    assert f"the java on PATH ({on_path}) is not used while JAVA_HOME is set" in message
    assert "unset it" in message


def test_a_java_home_with_an_old_java_is_refused_even_with_a_new_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "jdk11", 11)
    use(monkeypatch, tmp_path / "jdk11", fake_java(tmp_path / "path-jdk", 21).parent)
    with pytest.raises(JavaNotFoundError, match=r"bin/java is Java 11\)"):
        jars.find_java()


def test_a_java_home_java_that_is_not_executable_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "jdk", 17).chmod(0o644)
    use(monkeypatch, tmp_path / "jdk", tmp_path / "empty-path")
    with pytest.raises(JavaNotFoundError, match=r"bin/java is not executable\)"):
        jars.find_java()


def test_java_home_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = fake_java(tmp_path / "jdk", 17)
    use(monkeypatch, tmp_path / "jdk", fake_java(tmp_path / "path-jdk", 21).parent)
    assert jars.find_java() == str(chosen)


def test_without_java_home_the_java_on_path_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = fake_java(tmp_path / "path-jdk", 17)
    use(monkeypatch, None, on_path.parent)
    assert jars.find_java() == str(on_path)


def test_neither_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, None, tmp_path / "empty-path")
    with pytest.raises(JavaNotFoundError, match=r"no `java` on PATH and JAVA_HOME is not set"):
        jars.find_java()
