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


# A resource the test cannot do without is missing, with a cause on a second line: the
# skip-or-fail decision without starting anything.
UNAVAILABLE = """
from eventwire_devkit.pytest_plugin import unavailable

def test_needs_a_broker():
    unavailable("could not start a local Kafka cluster: formatting failed:\\njava.lang.ClassNotFoundException: kafka.Kafka")
"""


@pytest.mark.usefixtures("clean_env")
class TestStrictSwitch:
    def test_unavailable_skips_by_default_with_the_whole_reason(
        self, pytester: pytest.Pytester
    ) -> None:
        """Without the switch, a missing resource skips the test; the reason is given whole,
        on one line (its first line alone ended at "failed:", before the cause)."""
        pytester.makepyfile(UNAVAILABLE)
        result = pytester.runpytest_subprocess("-p", PLUGIN, "-rs")
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*formatting failed: java.lang.ClassNotFoundException*"])

    def test_ci_with_the_variable_off_skips(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``EVENTWIRE_DEVKIT_STRICT=0`` keeps the skips in a CI run that wants them."""
        monkeypatch.setenv("CI", "true")
        monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "0")
        pytester.makepyfile(UNAVAILABLE)
        pytester.runpytest_subprocess("-p", PLUGIN).assert_outcomes(skipped=1)

    def test_a_value_that_is_no_switch_is_a_usage_error(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``EVENTWIRE_DEVKIT_STRICT=on`` used to mean "not strict" silently."""
        monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "on")
        pytester.makepyfile(UNAVAILABLE)
        result = pytester.runpytest_subprocess("-p", PLUGIN)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*EVENTWIRE_DEVKIT_STRICT='on' is not a switch*"])

    @pytest.mark.parametrize(
        ("env", "args"),
        [
            ({"CI": "true"}, []),  # which CI services set: a CI run never passes by skipping
            ({}, ["--eventwire-strict"]),
            ({"EVENTWIRE_DEVKIT_STRICT": "1"}, []),
        ],
        ids=["CI=true", "option", "variable"],
    )
    def test_strict_mode_fails_instead(
        self,
        pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str],
        args: list[str],
    ) -> None:
        """``CI=true``, ``--eventwire-strict`` or ``EVENTWIRE_DEVKIT_STRICT=1`` turn the skip
        into a failure that says why."""
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        pytester.makepyfile(UNAVAILABLE)
        result = pytester.runpytest_subprocess("-p", PLUGIN, *args)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*strict mode: failing instead of skipping*"])

    def test_an_external_cluster_skips_the_fault_fixtures_even_when_strict(
        self, pytester: pytest.Pytester
    ) -> None:
        """An external cluster is a choice, not a failure: ``kafka_cluster`` skips, also in
        strict mode (it errored there)."""
        pytester.makepyfile(NEEDS_LOCAL_CLUSTER)
        result = pytester.runpytest_subprocess(
            "-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9", "--eventwire-strict", "-rs"
        )
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*external cluster is configured*"])

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


# The first test stops the session cluster's only node and fails before restarting it;
# the second needs the cluster whole again.
LEAVES_A_FAULT = """
def test_an_outage_test_that_fails_half_way(kafka_cluster):
    kafka_cluster.stop_node(1)
    assert False, "failed before restarting the node"

def test_a_later_test_gets_a_working_topic(kafka_topic, kafka_bootstrap):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 20000})
    errors = []
    producer.produce(kafka_topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(25)
    assert errors == [None]
"""


@pytest.mark.kafka
@pytest.mark.usefixtures("clean_env")
def test_a_fault_a_test_leaves_behind_does_not_break_the_next_tests(
    pytester: pytest.Pytester,
) -> None:
    """A test that stopped a node of the session cluster and failed before restarting it
    left every later ``kafka_topic`` test erroring after 30 s: the cluster is healed after
    a test that asked for it, and before each ``kafka_topic``."""
    pytester.makepyfile(LEAVES_A_FAULT)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "--eventwire-strict", timeout=300)
    result.assert_outcomes(passed=1, failed=1)


# Each fault test leaves node 1 down and fails; the last test lists the topics they left.
LEAVES_A_FAULT_AND_A_TOPIC = """
import pytest

@pytest.mark.parametrize("fault", ["stop_node", "pause_node"])
def test_leaves_a_fault_and_its_topic(kafka_cluster, kafka_topic, fault):
    getattr(kafka_cluster, fault)(1)
    assert False, f"failed after {fault}, before undoing it"

def test_no_topic_is_left_behind(kafka_cluster):
    topics = kafka_cluster._admin_client().list_topics(timeout=10).topics
    assert sorted(t for t in topics if t.startswith("t-test_leaves")) == []
"""


@pytest.mark.kafka
@pytest.mark.usefixtures("clean_env")
def test_kafka_topic_is_deleted_after_a_test_that_left_a_node_down(
    pytester: pytest.Pytester,
) -> None:
    """``kafka_topic``'s teardown ran before the cluster was healed: the deletion retried
    against the stopped or paused node for 10 s, failed silently, and left the topic on the
    session cluster. It heals first now, as ``kafka_topic3`` does."""
    pytester.makepyfile(LEAVES_A_FAULT_AND_A_TOPIC)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "--eventwire-strict", timeout=300)
    result.assert_outcomes(passed=1, failed=2)


@pytest.mark.usefixtures("clean_env")
def test_an_unreachable_external_cluster_fails_each_test_once_asked_naming_the_option(
    pytester: pytest.Pytester,
) -> None:
    """``--kafka-bootstrap`` naming a cluster that does not answer: the session asks it once
    and every ``kafka_topic`` test errors with that answer, naming the option (each used to
    wait 30 s for its own topic and say only "could not create topic")."""
    pytester.makepyfile("\n".join(f"def test_{n}(kafka_topic):\n    pass\n" for n in range(3)))
    result = pytester.runpytest_subprocess("-p", PLUGIN, "--kafka-bootstrap=127.0.0.1:9")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        ["*external Kafka cluster 127.0.0.1:9 (--kafka-bootstrap or EVENTWIRE_BOOTSTRAP)*"]
    )
    assert "could not create topic" not in result.stdout.str()


@pytest.mark.usefixtures("clean_env")
def test_kafka_topic_starts_no_local_cluster_for_a_projects_own_bootstrap(
    pytester: pytest.Pytester,
) -> None:
    """A project that overrides ``kafka_bootstrap`` (its own broker) gets its topics there;
    ``kafka_topic`` heals only a cluster the plugin runs, and starts none (it started the
    1-node cluster just to heal it)."""
    pytester.makeconftest(
        """
import pytest
import eventwire_devkit.kafka as kafka
import eventwire_devkit._kafka.admin as admin

def _no_start(self, *args, **kwargs):
    raise kafka.KafkaClusterError("a local cluster was started")

kafka.LocalKafkaCluster.start = _no_start
admin.create_topic = lambda *args, **kwargs: None  # the project's broker
admin.delete_topic = lambda *args, **kwargs: None

@pytest.fixture(scope="session")
def kafka_bootstrap():
    return "127.0.0.1:19092"
"""
    )
    pytester.makepyfile("def test_uses_a_topic(kafka_topic):\n    assert kafka_topic\n")
    result = pytester.runpytest_subprocess("-p", PLUGIN, "--eventwire-strict")
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("clean_env")
def test_broker_fetch_names_a_strict_value_that_is_no_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``EVENTWIRE_DEVKIT_STRICT=on eventwire broker fetch`` exits 2 with one line naming the
    variable (it printed a ValueError traceback)."""
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "on")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "eventwire"), "broker", "fetch"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "EVENTWIRE_DEVKIT_STRICT='on' is not a switch" in done.stderr
    assert "Traceback" not in done.stderr
