"""``eventwire broker``: fetch the Kafka jars, run a real local cluster, inspect or stop it.

``up`` prints the bootstrap servers as the LAST line of stdout (spinners and notes go to
stderr), so ``BOOTSTRAP=$(eventwire broker up --detach | tail -n1)`` works. A detached
cluster is described by a state file, by default ``${XDG_CACHE_HOME:-~/.cache}/eventwire/
run/broker.json`` (one per user; override with ``--state-file`` or ``EVENTWIRE_BROKER_STATE``),
which ``status`` and ``down`` read.

``up --security sasl_ssl`` starts a secured cluster (SASL over TLS on every listener,
SCRAM-SHA-512/PLAIN/OAUTHBEARER, ACLs for the principals ``admin``, ``producer`` and
``nobody``) and prints one ``client config <name>: <path>`` line per librdkafka properties
file before the bootstrap line, e.g. ``client config producer: /tmp/.../producer.properties``.
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
    help="Run a real local Apache Kafka (KRaft) cluster for development and tests.",
    no_args_is_help=True,
)
err = Console(stderr=True)

STATE_ENV = "EVENTWIRE_BROKER_STATE"


def default_state_file() -> Path:
    """Return the state file of ``broker up --detach`` (env ``EVENTWIRE_BROKER_STATE`` wins)."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser()
    from eventwire_devkit._kafka.runtime import run_dir  # noqa: PLC0415

    return run_dir() / "broker.json"


StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        envvar=STATE_ENV,
        help="State file of a detached cluster [default: ~/.cache/eventwire/run/broker.json].",
    ),
]


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _alive_pids(state: dict[str, Any]) -> list[int]:
    from eventwire_devkit._kafka.runtime import jvm_pids_of  # noqa: PLC0415

    return jvm_pids_of(str(state["data_dir"]))


@app.command()
def fetch(
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if Kafka cannot run here (implied by EVENTWIRE_DEVKIT_STRICT=1, "
            "or CI=true).",
        ),
    ] = False,
) -> None:
    """Download the pinned Apache Kafka jars once (with Maven) and print where they are.

    Without Java or Maven this only warns and exits 0, so ``make demo`` still works (on
    the in-memory transport); with --strict, EVENTWIRE_DEVKIT_STRICT=1 or CI=true, it exits 1.
    """
    from eventwire_devkit._kafka.jars import find_java  # noqa: PLC0415
    from eventwire_devkit.kafka import (  # noqa: PLC0415
        KAFKA_VERSION,
        KafkaClusterError,
        ensure_kafka_jars,
    )

    env_strict = strict_or_exit()  # read first: a bad value is named before any work
    try:
        with err.status(f"Checking the Apache Kafka {KAFKA_VERSION} jars...") as status:
            find_java()
            libs = ensure_kafka_jars(progress=status.update)
    except KafkaClusterError as exc:
        err.print(f"[bold yellow]warning:[/] {exc}")
        if strict or env_strict:
            raise typer.Exit(1) from None
        err.print("Going on without a local Kafka broker (the demo falls back to in-memory).")
        return
    err.print(f"Apache Kafka {KAFKA_VERSION} jars ready.")
    typer.echo(str(libs))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_no_running(path: Path) -> None:
    state = _read_state(path)
    if state is None:
        return
    if _alive_pids(state):
        err.print(
            f"[bold red]error:[/] a detached cluster already runs at "
            f"{state['bootstrap_servers']} (state: {path}). Stop it with `eventwire broker down`."
        )
        raise typer.Exit(1)
    from eventwire_devkit.kafka import stop_recorded_cluster  # noqa: PLC0415

    stop_recorded_cluster(str(state["cluster_id"]))  # clean up what a dead one left
    path.unlink(missing_ok=True)


@app.command()
def up(  # noqa: PLR0917 - typer maps each parameter to an option
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of nodes: 1 or 3.")] = 1,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; leave the cluster running.")
    ] = False,
    partitions: Annotated[int, typer.Option(help="num.partitions for auto-created topics.")] = 3,
    timeout: Annotated[float, typer.Option(help="Startup timeout in seconds.")] = 90.0,
    security: Annotated[
        str,
        typer.Option(
            "--security",
            help="plaintext, or sasl_ssl: TLS + SASL (SCRAM-SHA-512, PLAIN, OAUTHBEARER) "
            "with ACLs; prints a client config file per principal.",
        ),
    ] = "plaintext",
    state_file: StateOption = None,
) -> None:
    """Start a local cluster; print its bootstrap servers as the last stdout line.

    In the foreground it runs until Ctrl-C or SIGTERM, then stops every node. With --detach
    it returns once ready and records the cluster in the state file for status/down. With
    --security sasl_ssl, ``client config <name>: <path>`` lines come first on stdout.
    """
    from eventwire_devkit.kafka import KafkaClusterError, LocalKafkaCluster  # noqa: PLC0415

    if nodes not in {1, 3}:
        err.print("[bold red]error:[/] --nodes must be 1 or 3")
        raise typer.Exit(2)
    if security not in {"plaintext", "sasl_ssl"}:
        err.print("[bold red]error:[/] --security must be plaintext or sasl_ssl")
        raise typer.Exit(2)
    path = state_file or default_state_file()
    if detach:
        _check_no_running(path)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        with err.status(f"Starting a {nodes}-node Apache Kafka cluster...") as status:
            cluster = LocalKafkaCluster(
                nodes,
                partitions=partitions,
                die_with_parent=not detach,
                startup_timeout=timeout,
                progress=status.update,
                security=security,
            )
            cluster.start()
    except KafkaClusterError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("Interrupted; stopped.")
        raise typer.Exit(130) from None
    err.print(
        f"Kafka {nodes}-node cluster ready in {cluster.startup_seconds:.1f}s at "
        f"[bold]{cluster.bootstrap_servers}[/] (data and logs: {cluster.data_dir})"
    )
    _echo_client_configs(cluster.client_configs)
    if detach:
        _write_state(path, cluster)
        err.print(f"Detached (state: {path}). Stop it with `eventwire broker down`.")
        typer.echo(cluster.bootstrap_servers)
        return
    _run_foreground(cluster)


def _echo_client_configs(configs: dict[str, Path]) -> None:
    """Print ``client config <name>: <path>`` per file (stdout), with a note on stderr."""
    if not configs:
        return
    err.print(
        "Client configs (librdkafka properties; principals admin = super user, producer = "
        "writes 'allowed.*' topics only, nobody = no rights; <name>-plain / "
        "<name>-oauthbearer use those mechanisms):"
    )
    for name, config_path in configs.items():
        typer.echo(f"client config {name}: {config_path}")


def _read_properties(path: str | None) -> dict[str, str] | None:
    """``key=value`` lines of a client config file (None without one)."""
    if not path:
        return None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _write_state(path: Path, cluster: Any) -> None:
    from eventwire_devkit.kafka import KAFKA_VERSION  # noqa: PLC0415

    state = {
        "cluster_id": cluster.cluster_id,
        "bootstrap_servers": cluster.bootstrap_servers,
        "data_dir": str(cluster.data_dir),
        "nodes": [{"id": i, "pid": cluster.node_pid(i)} for i in cluster.node_ids],
        "security": cluster.security,
        "client_configs": {name: str(p) for name, p in cluster.client_configs.items()},
        "kafka_version": KAFKA_VERSION,
        "started_at": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


def _run_foreground(cluster: Any) -> None:
    typer.echo(cluster.bootstrap_servers)
    err.print("Press Ctrl-C to stop.")
    code = 0
    try:
        while True:
            time.sleep(0.5)
            dead = [i for i in cluster.node_ids if not cluster.is_running(i)]
            if dead:
                err.print(f"[bold red]error:[/] node(s) {dead} exited; see {cluster.data_dir}")
                code = 1
                break
    except KeyboardInterrupt:
        pass
    finally:
        with err.status("Stopping the cluster..."):
            cluster.close()
        err.print("Stopped.")
    if code:
        raise typer.Exit(code)


@app.command()
def status(state_file: StateOption = None) -> None:
    """Show the detached cluster (exit 0 if every node answers, 1 otherwise)."""
    from confluent_kafka import KafkaException  # noqa: PLC0415

    from eventwire_devkit._kafka.admin import broker_ids, new_admin  # noqa: PLC0415

    path = state_file or default_state_file()
    state = _read_state(path)
    if state is None:
        err.print(f"No detached cluster (no state file {path}).")
        raise typer.Exit(1)
    alive = _alive_pids(state)
    want = {int(n["id"]) for n in state["nodes"]}
    try:
        security = _read_properties(state.get("client_configs", {}).get("admin"))
        listed = broker_ids(new_admin(str(state["bootstrap_servers"]), security), timeout=5.0)
    except KafkaException:
        listed = set()
    for node in state["nodes"]:
        up_ = int(node["id"]) in listed
        pid_state = "running" if node["pid"] in alive else "not running"
        err.print(f"node {node['id']}: pid {node['pid']} {pid_state}, in metadata: {up_}")
    err.print(f"data and logs: {state['data_dir']}")
    _echo_client_configs({k: Path(v) for k, v in state.get("client_configs", {}).items()})
    typer.echo(state["bootstrap_servers"])
    if not listed >= want:
        raise typer.Exit(1)


@app.command()
def down(
    state_file: StateOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before SIGKILL.")] = 15.0,
) -> None:
    """Stop the detached cluster and delete its data."""
    from eventwire_devkit._kafka.runtime import kill_all  # noqa: PLC0415
    from eventwire_devkit.kafka import stop_recorded_cluster  # noqa: PLC0415

    path = state_file or default_state_file()
    state = _read_state(path)
    if state is None:
        err.print(f"No detached cluster (no state file {path}).")
        return
    with err.status("Stopping the detached cluster..."):
        pids = stop_recorded_cluster(str(state["cluster_id"]), timeout)
        left = _alive_pids(state)  # in case the run record was lost
        kill_all(str(state["data_dir"]), left)
    path.unlink(missing_ok=True)
    err.print(f"Stopped {len(set(pids) | set(left))} Kafka JVM(s).")
