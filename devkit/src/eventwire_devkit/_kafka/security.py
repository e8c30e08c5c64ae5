"""The ``sasl_ssl`` mode of a local cluster: certificates, users, listeners, ACLs, client files.

Everything is made fresh at start under ``<data_dir>/security``:

* **TLS** with the JDK's ``keytool``: a CA, one broker key pair whose certificate (signed by
  that CA) names only ``DNS:localhost``, PKCS12 key and trust stores, the CA as PEM for
  clients, and a second CA (``untrusted-ca.pem``) that signed nothing the brokers use.
* **Listeners**: ``SASL_SSL`` (clients and inter-broker, SCRAM-SHA-512 as ``admin``),
  advertised as ``localhost:<port>``, and ``CONTROLLER`` (KRaft quorum), also ``SASL_SSL``,
  with PLAIN as ``admin``. No listener is plaintext.
* **Mechanisms** on the client listener: SCRAM-SHA-512 (users added at format time with
  ``StorageTool format --add-scram``), PLAIN (users in the JAAS config) and OAUTHBEARER
  (Kafka's unsecured-JWS validator: any ``alg: none`` token with ``sub`` and ``exp``; the
  principal is ``User:<sub>``; for tests only).
* **Principals**: ``admin`` (super user), ``producer`` (Write/Describe on topics starting
  with :data:`ALLOWED_PREFIX`, and cluster IdempotentWrite), ``nobody`` (no ACL at all).
  ``StandardAuthorizer``; ``allow.everyone.if.no.acl.found`` stays false.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventwire_devkit._kafka.errors import ClusterStartError, KafkaClusterError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventwire_devkit._kafka.node import Node

__all__ = [
    "ALLOWED_PREFIX",
    "CLIENT_HOST",
    "MECHANISMS",
    "PRINCIPALS",
    "SECURITY_MODES",
    "SecurityMaterial",
    "client_properties",
    "create_acls",
    "make_tls",
    "new_material",
    "server_properties",
    "write_client_configs",
]

SECURITY_MODES = ("plaintext", "sasl_ssl")
#: Topic-name prefix the ``producer`` principal may write to.
ALLOWED_PREFIX = "allowed."
#: The host name the broker certificate names, and the advertised listener's host.
CLIENT_HOST = "localhost"
#: admin: super user (inter-broker and controller too); producer: prefixed ACLs; nobody: none.
PRINCIPALS = ("admin", "producer", "nobody")
MECHANISMS = ("SCRAM-SHA-512", "PLAIN", "OAUTHBEARER")
_LISTENER = "SASL_SSL"
_CONTROLLER = "CONTROLLER"
_VALIDITY_DAYS = "30"
_KEYTOOL_JVM = ("-J-Xmx64m", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1")
_UNSECURED_VALIDATOR = (
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler"
)


@dataclass(frozen=True)
class SecurityMaterial:
    """Paths and secrets of one secured cluster (all files under ``directory``)."""

    directory: Path
    ca_pem: Path
    untrusted_ca_pem: Path
    keystore: Path
    truststore: Path
    store_password: str
    passwords: Mapping[str, str]

    @property
    def clients_dir(self) -> Path:
        """Where the per-principal client config files are written."""
        return self.directory / "clients"


def find_keytool(java: str) -> str:
    """Return the ``keytool`` beside ``java`` (else the one on PATH).

    Raises:
        ClusterStartError: there is none.

    """
    beside = Path(java).resolve().parent / "keytool"
    if beside.is_file():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise ClusterStartError(
            f"the secured cluster makes its certificates with the JDK's keytool, but there is "
            f"none beside {java} or on PATH; install a full JDK (e.g. openjdk-17-jdk-headless)"
        )
    return found


def _keytool(keytool: str, *commands: Sequence[str]) -> None:
    """Run one keytool invocation per command, all at once (they must be independent).

    Raises:
        ClusterStartError: one of them failed; the message holds its output.

    """
    runs = [
        (
            args,
            subprocess.Popen(
                [keytool, *_KEYTOOL_JVM, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for args in commands
    ]
    failures = []
    for args, proc in runs:
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"`keytool {args[0]}` (exit {proc.returncode}): {out.strip()}")
    if failures:
        raise ClusterStartError("making the TLS material failed:\n" + "\n".join(failures))


def new_material(directory: Path) -> SecurityMaterial:
    """Choose the paths and random passwords of a cluster's security files (none written yet).

    :func:`make_tls` writes the files; the broker properties and the SCRAM users need only
    this, so storage formatting can run while keytool works.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return SecurityMaterial(
        directory=directory,
        ca_pem=directory / "ca.pem",
        untrusted_ca_pem=directory / "untrusted-ca.pem",
        keystore=directory / "broker.keystore.p12",
        truststore=directory / "truststore.p12",
        store_password=secrets.token_hex(12),
        passwords={name: f"{name}-{secrets.token_hex(10)}" for name in PRINCIPALS},
    )


def make_tls(m: SecurityMaterial, java: str) -> None:
    """Make the CAs and the broker key and trust stores of ``m`` with the JDK's keytool.

    keytool runs in four rounds of parallel invocations (about 2 s in all).

    Raises:
        ClusterStartError: keytool is missing or failed.

    """
    keytool = find_keytool(java)
    directory, pw = m.directory, m.store_password

    def store(path: Path) -> list[str]:
        return ["-keystore", str(path), "-storetype", "PKCS12", "-storepass", pw]

    def new_key(path: Path, alias: str, dname: str, *ext: str) -> list[str]:
        return [
            "-genkeypair", "-alias", alias, "-keyalg", "RSA", "-keysize", "2048",
            "-dname", dname, "-validity", _VALIDITY_DAYS, "-keypass", pw, *ext, *store(path),
        ]  # fmt: skip

    ca_store, ca_pem = directory / "ca.p12", m.ca_pem
    other_store, other_pem = directory / "untrusted-ca.p12", m.untrusted_ca_pem
    keystore, truststore = m.keystore, m.truststore
    csr, signed = directory / "broker.csr", directory / "broker.pem"
    chain = directory / "broker-chain.pem"
    _keytool(
        keytool,
        new_key(ca_store, "ca", "CN=eventwire devkit test CA", "-ext", "bc:c"),
        new_key(other_store, "ca", "CN=eventwire devkit untrusted CA", "-ext", "bc:c"),
        new_key(keystore, "broker", f"CN={CLIENT_HOST}"),
    )
    _keytool(
        keytool,
        ["-exportcert", "-rfc", "-alias", "ca", "-file", str(ca_pem), *store(ca_store)],
        ["-exportcert", "-rfc", "-alias", "ca", "-file", str(other_pem), *store(other_store)],
        ["-certreq", "-alias", "broker", "-file", str(csr), *store(keystore)],
    )
    _keytool(
        keytool,
        [
            "-gencert", "-alias", "ca", *store(ca_store), "-infile", str(csr),
            "-outfile", str(signed), "-rfc", "-validity", _VALIDITY_DAYS,
            "-ext", f"SAN=dns:{CLIENT_HOST}",
            "-ext", "KU=digitalSignature,keyEncipherment", "-ext", "EKU=serverAuth,clientAuth",
        ],
    )  # fmt: skip
    chain.write_text(signed.read_text() + ca_pem.read_text())
    _keytool(
        keytool,
        ["-importcert", "-noprompt", "-alias", "broker", "-file", str(chain), *store(keystore)],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem), *store(truststore)],
    )
    for leftover in (csr, chain, ca_store, other_store):
        leftover.unlink(missing_ok=True)


def _jaas(module: str, **options: str) -> str:
    opts = " ".join(f'{k}="{v}"' for k, v in options.items())
    return f"org.apache.kafka.common.security.{module} required {opts};"


def server_properties(node: Node, nodes: Sequence[Node], m: SecurityMaterial) -> dict[str, str]:
    """Return the security part of a node's ``server.properties`` (replaces the listeners)."""
    admin_pw = m.passwords["admin"]
    plain_users = {f"user_{name}": pw for name, pw in m.passwords.items()}
    lst, ctl = _LISTENER.lower(), _CONTROLLER.lower()
    voters = ",".join(f"{n.node_id}@{CLIENT_HOST}:{n.controller_port}" for n in nodes)
    return {
        "controller.quorum.voters": voters,
        "listeners": (
            f"{_LISTENER}://127.0.0.1:{node.port},{_CONTROLLER}://127.0.0.1:{node.controller_port}"
        ),
        "advertised.listeners": f"{_LISTENER}://{CLIENT_HOST}:{node.port}",
        "listener.security.protocol.map": f"{_LISTENER}:SASL_SSL,{_CONTROLLER}:SASL_SSL",
        "inter.broker.listener.name": _LISTENER,
        "controller.listener.names": _CONTROLLER,
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{lst}.sasl.enabled.mechanisms": ",".join(MECHANISMS),
        f"listener.name.{ctl}.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{lst}.scram-sha-512.sasl.jaas.config": _jaas(
            "scram.ScramLoginModule", username="admin", password=admin_pw
        ),
        f"listener.name.{lst}.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", username="admin", password=admin_pw, **plain_users
        ),
        f"listener.name.{lst}.oauthbearer.sasl.jaas.config": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredLoginStringClaim_sub="admin";'
        ),
        f"listener.name.{lst}.oauthbearer.sasl.server.callback.handler.class": (
            _UNSECURED_VALIDATOR
        ),
        f"listener.name.{ctl}.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", username="admin", password=admin_pw, user_admin=admin_pw
        ),
        # a client whose token (or SCRAM session) ends must re-authenticate (KIP-368)
        "connections.max.reauth.ms": "3600000",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(m.keystore),
        "ssl.keystore.password": m.store_password,
        "ssl.key.password": m.store_password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(m.truststore),
        "ssl.truststore.password": m.store_password,
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_format_args(m: SecurityMaterial) -> list[str]:
    """``StorageTool format`` arguments that create every principal's SCRAM-SHA-512 user."""
    args: list[str] = []
    for name, pw in m.passwords.items():
        args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]"]
    return args


def client_properties(
    bootstrap: str, m: SecurityMaterial, principal: str, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, str]:
    """Return the librdkafka properties that connect as ``principal`` with ``mechanism``.

    OAUTHBEARER uses librdkafka's built-in unsecured JWT (``sub`` = the principal), which
    the brokers' unsecured validator accepts; pass an ``oauth_cb`` to use your own tokens.

    Raises:
        ValueError: unknown principal or mechanism.

    """
    if principal not in m.passwords:
        raise ValueError(f"unknown principal {principal!r}; known: {', '.join(PRINCIPALS)}")
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {mechanism!r}; known: {', '.join(MECHANISMS)}")
    props = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(m.ca_pem),
        "sasl.mechanism": mechanism,
    }
    if mechanism == "OAUTHBEARER":
        props["enable.sasl.oauthbearer.unsecure.jwt"] = "true"
        props["sasl.oauthbearer.config"] = f"principal={principal}"
    else:
        props["sasl.username"] = principal
        props["sasl.password"] = m.passwords[principal]
    return props


def client_config_name(principal: str, mechanism: str) -> str:
    """File name of one client config: ``<principal>.properties`` for SCRAM-SHA-512."""
    if mechanism == "SCRAM-SHA-512":
        return f"{principal}.properties"
    return f"{principal}-{mechanism.lower()}.properties"


def write_client_configs(bootstrap: str, m: SecurityMaterial) -> dict[str, Path]:
    """Write a properties file per principal and mechanism (mode 0600); return name -> path.

    Names are ``<principal>`` (SCRAM-SHA-512), ``<principal>-plain`` and
    ``<principal>-oauthbearer``.
    """
    m.clients_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for principal in PRINCIPALS:
        for mechanism in MECHANISMS:
            props = client_properties(bootstrap, m, principal, mechanism)
            path = m.clients_dir / client_config_name(principal, mechanism)
            path.touch(mode=0o600)
            path.chmod(0o600)
            header = f"# eventwire devkit secured cluster: {principal} over {mechanism}\n"
            path.write_text(header + "".join(f"{k}={v}\n" for k, v in props.items()))
            written[path.stem] = path
    return written


def create_acls(admin: Any, timeout: float = 30.0) -> None:
    """Grant ``producer`` Write+Describe on :data:`ALLOWED_PREFIX` topics and IdempotentWrite.

    Raises:
        KafkaClusterError: the broker refused or did not answer.

    """
    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    allow = AclPermissionType.ALLOW
    user = "User:producer"
    bindings = [
        AclBinding(
            ResourceType.TOPIC, ALLOWED_PREFIX, ResourcePatternType.PREFIXED, user, "*", op, allow
        )
        for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
    ]
    bindings.append(
        AclBinding(
            ResourceType.BROKER,  # librdkafka's name for the CLUSTER resource (type 4)
            "kafka-cluster",
            ResourcePatternType.LITERAL,
            user,
            "*",
            AclOperation.IDEMPOTENT_WRITE,
            allow,
        )
    )
    try:
        futures = admin.create_acls(bindings, request_timeout=timeout)
        for future in futures.values():
            future.result(timeout=timeout)
    except KafkaException as exc:
        raise KafkaClusterError(f"creating the ACLs failed: {exc}") from exc


def wait_acls(admin: Any, deadline: float) -> None:
    """Wait until ``admin``'s broker lists the producer's three ACL bindings.

    Raises:
        KafkaClusterError: they did not show up before ``deadline`` (monotonic).

    """
    import time  # noqa: PLC0415

    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    anything: Any = None  # the stubs say str, confluent-kafka takes None as "any"
    query = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        "User:producer",
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    seen = 0
    while True:
        try:
            seen = len(admin.describe_acls(query, request_timeout=5.0).result(timeout=10.0))
        except KafkaException:
            seen = -1
        if seen >= 3:
            return
        if time.monotonic() > deadline:
            raise KafkaClusterError(f"the ACLs did not show up in time (a broker listed {seen})")
        time.sleep(0.1)
