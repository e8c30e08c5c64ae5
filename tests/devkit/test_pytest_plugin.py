"""eventwire_devkit.pytest_plugin: opt-in loading, and the strict switch of its own.

Each case runs pytest in a subprocess on a small test file, with a clean environment for
the switches (``CI``, ``EVENTWIRE_DEVKIT_STRICT``, ``EVENTWIRE_BOOTSTRAP``).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "eventwire_devkit.pytest_plugin"

# kafka_cluster cannot run next to an external cluster, so it is "unavailable" at once,
# without Java: the cheapest way to reach the skip-or-fail decision.
NEEDS_LOCAL_CLUSTER = """
def test_needs_a_local_cluster(kafka_cluster):
    pass
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "EVENTWIRE_DEVKIT_STRICT", "EVENTWIRE_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
class TestOptIn:
    def test_not_loaded_unless_asked(self, pytester: pytest.Pytester) -> None:
        """Installing the devkit loads nothing: its fixtures are unknown to a plain run."""
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*fixture 'kafka_cluster' not found*"])

    def test_loaded_with_pytest_plugins(self, pytester: pytest.Pytester) -> None:
        """``pytest_plugins = [...]`` in a top-level conftest loads the fixtures and marks
        the tests that use them ``kafka``."""
        pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess("--kafka-bootstrap=127.0.0.1:9", "-m", "kafka")
        result.assert_outcomes(skipped=1)


@pytest.mark.usefixtures("clean_env")
class TestStrictSwitch:
    def test_unavailable_broker_skips_by_default(self, pytester: pytest.Pytester) -> None:
        """Without the switch, a cluster that cannot run skips the test, with the reason."""
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess("-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9", "-rs")
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*external cluster is configured*"])

    def test_ci_alone_does_not_switch_it_on(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``CI=true``, which most CI systems set, still skips."""
        monkeypatch.setenv("CI", "true")
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess("-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9")
        result.assert_outcomes(skipped=1)

    def test_option_fails_instead(self, pytester: pytest.Pytester) -> None:
        """``--eventwire-strict`` turns the skip into a failure."""
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess(
            "-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9", "--eventwire-strict"
        )
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*strict mode: failing instead of skipping*"])

    def test_variable_fails_instead(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``EVENTWIRE_DEVKIT_STRICT=1`` does the same as the option."""
        monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "1")
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess("-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9")
        result.assert_outcomes(errors=1)

    def test_unavailable_at_module_level(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``unavailable()`` at import time skips the module, or fails its collection when
        strict."""
        pytester.makepyfile(
            f"from {PLUGIN} import unavailable\n"
            "unavailable('no librdkafka mock here')\n"
            "def test_never_runs():\n    pass\n"
        )
        pytester.runpytest_subprocess("-p", PLUGIN).assert_outcomes(skipped=1)
        monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "yes")
        pytester.runpytest_subprocess("-p", PLUGIN).assert_outcomes(errors=1)
