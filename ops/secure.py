"""The secured local stack (``make up SECURE=1``): a CA and certificates, SCRAM users and Kafka ACLs.

Everything is generated on the machine on first use, under ``<home>/secure`` (mode 0700; keys and
``users.json`` 0600), and never checked in:

* ``ca.pem`` / ``ca.key``: a local certificate authority (10 years);
* ``broker.pem``: the brokers' key and certificate (for ``127.0.0.1`` and ``localhost``), which also
  authenticates broker to controller by mutual TLS (principal ``broker``);
* ``<role>.pem`` / ``<role>.key``: a client certificate per role (principal = the role), for mutual
  TLS instead of SASL;
* ``users.json``: a random password per role (``admin``, ``indexer``, ``query``, ``producer``,
  ``searcher``), created as SCRAM-SHA-512 users when the broker's log directory is formatted;
* ``weaviate.json``: Weaviate's API keys (``admin``: root; ``indexer``: the role ``freshet-indexer``,
  data and schema of the collection; ``query``: ``freshet-query``, read only) and the password of its
  internal cluster API.

The broker's client listener is ``SASL_SSL`` (SCRAM-SHA-512 over TLS); inter-broker traffic uses the
same listener as ``admin``; the KRaft controller listener is TLS with client certificates. The
``StandardAuthorizer`` denies whatever no ACL allows; :func:`acls` lists what each role may do
(docs/security.md).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from freshet.settings import Settings

#: Who talks to the secured broker. ``admin`` is the broker's own inter-broker user and the operator's
#: (the CLI's ``stack`` commands, tests and benchmarks), a super user.
ROLES = ("admin", "indexer", "query", "producer", "searcher")
SCRAM = "SCRAM-SHA-512"
BROKER_PRINCIPAL = "broker"
SUPER_USERS = ("admin", BROKER_PRINCIPAL)
#: Weaviate's API-key users (``admin`` is its root user) and ``cluster``, its internal API's password.
WEAVIATE_USERS = ("admin", "indexer", "query", "cluster")
WEAVIATE_ROLES = {"indexer": "freshet-indexer", "query": "freshet-query"}


@dataclass(frozen=True)
class Secrets:
    """Paths and passwords of a secured stack."""

    dir: Path
    passwords: dict[str, SecretStr]
    weaviate_keys: dict[str, SecretStr]
    """Weaviate API keys of ``admin``, ``indexer`` and ``query``; ``cluster``: its internal API's password."""

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's PKCS#8 key followed by its certificate (Kafka's PEM keystore)."""
        return self.dir / "broker.pem"

    def cert(self, role: str) -> Path:
        return self.dir / f"{role}.pem"

    def key(self, role: str) -> Path:
        return self.dir / f"{role}.key"

    def password(self, role: str) -> str:
        return self.passwords[role].get_secret_value()

    def weaviate_key(self, role: str) -> str:
        return self.weaviate_keys[role].get_secret_value()

    def all_secrets(self) -> list[str]:
        """Every password and key (to check that none leaks)."""
        return [v.get_secret_value() for v in (*self.passwords.values(), *self.weaviate_keys.values())]


def secure_dir(home: Path) -> Path:
    return home / "secure"


def load(home: Path) -> Secrets | None:
    """The home's secrets, or None when it was never secured."""
    d = secure_dir(home)
    try:
        raw = json.loads((d / "users.json").read_text(encoding="utf-8"))
        keys = json.loads((d / "weaviate.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return Secrets(d, {role: SecretStr(pw) for role, pw in raw.items()},
                   {role: SecretStr(k) for role, k in keys.items()})


def ensure(home: Path) -> Secrets:
    """The home's secrets, generated if missing (a CA, the broker's and each role's certificate, passwords)."""
    found = load(home)
    if found is not None:
        return found
    d = secure_dir(home)
    if (d / "users.json").exists():  # secured before Weaviate was: its keys only
        _write(d / "weaviate.json", json.dumps({r: secrets.token_urlsafe(32) for r in WEAVIATE_USERS}, indent=2)
               + "\n", private=True)
        again = load(home)
        assert again is not None
        return again
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    ca_key, ca_cert = _ca()
    _write(d / "ca.key", _key_pem(ca_key), private=True)
    _write(d / "ca.pem", _cert_pem(ca_cert))
    key, cert = _issue(ca_key, ca_cert, BROKER_PRINCIPAL, server=True)
    _write(d / "broker.pem", _key_pem(key) + _cert_pem(cert), private=True)
    for role in ROLES:
        key, cert = _issue(ca_key, ca_cert, role, server=False)
        _write(d / f"{role}.key", _key_pem(key), private=True)
        _write(d / f"{role}.pem", _cert_pem(cert))
    passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
    keys = {role: secrets.token_urlsafe(32) for role in WEAVIATE_USERS}
    _write(d / "weaviate.json", json.dumps(keys, indent=2) + "\n", private=True)
    _write(d / "users.json", json.dumps(passwords, indent=2) + "\n", private=True)
    return Secrets(d, {r: SecretStr(p) for r, p in passwords.items()}, {r: SecretStr(k) for r, k in keys.items()})


def _write(path: Path, text: str, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _ca() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshet local CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _issue(ca_key: Any, ca_cert: Any, common_name: str, *, server: bool) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=825))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
                   else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode())


def _cert_pem(cert: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(cert.public_bytes(serialization.Encoding.PEM).decode())


# --- the broker -------------------------------------------------------------------------------
def format_args(s: Secrets) -> list[str]:
    """``kafka-storage format`` arguments that create every role's SCRAM user."""
    out: list[str] = []
    for role in ROLES:
        out += ["--add-scram", f"{SCRAM}=[name={role},password={s.password(role)}]"]
    return out


def listener_properties(s: Secrets, host: str, port: int, controller_port: int, tls_port: int = 0) -> list[str]:
    """``server.properties`` lines of a secured broker (and controller): SASL_SSL on ``port``, and
    with ``tls_port`` a mutual-TLS client listener there (principal: the certificate's CN)."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" '
            f'password="{s.password("admin")}";')
    mtls = f",SSL://{host}:{tls_port}" if tls_port else ""
    return [
        f"listeners=SASL_SSL://{host}:{port}{mtls},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=SASL_SSL://{host}:{port}{mtls}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL" + (",SSL:SSL" if tls_port else ""),
        *(["listener.name.ssl.ssl.client.auth=required"] if tls_port else []),
        "inter.broker.listener.name=SASL_SSL",
        f"sasl.enabled.mechanisms={SCRAM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM}",
        f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config={jaas}",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={s.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={s.ca}",
        "ssl.endpoint.identification.algorithm=https",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=" + ";".join(f"User:{u}" for u in SUPER_USERS),
    ]


# --- who may do what --------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One ACL: ``role`` may ``operation`` the ``resource`` (``topic``/``group``/``cluster``) ``name``,
    a literal name or, with ``prefixed``, every name that starts with it."""

    role: str
    operation: str
    resource: str
    name: str
    prefixed: bool = False


def grants(settings: Settings) -> list[Grant]:
    """What each role needs, and nothing more (docs/security.md, "Kafka ACLs")."""
    s = settings
    out: list[Grant] = []

    def topic(role: str, name: str, *ops: str, prefixed: bool = False) -> None:
        out.extend(Grant(role, op, "topic", name, prefixed) for op in ("DESCRIBE", *ops))

    indexer_app, query_app = f"{s.consumer_group_prefix}-indexer", f"{s.consumer_group_prefix}-query"
    # the indexer: reads the changes, writes what it derives, and owns its Faust app's topics and group
    topic("indexer", s.topic_changes, "READ", "DESCRIBE_CONFIGS")
    for t in (s.topic_applied, s.topic_dead_letter, s.topic_metrics):
        topic("indexer", t, "WRITE", "READ", "CREATE", "DESCRIBE_CONFIGS")
    topic("indexer", s.topic_requests, "CREATE", "DESCRIBE_CONFIGS")  # ensure_topics at start: all of freshet's
    topic("indexer", s.topic_replies, "CREATE", "DESCRIBE_CONFIGS")
    topic("indexer", indexer_app, "READ", "WRITE", "CREATE", "DESCRIBE_CONFIGS", prefixed=True)
    out.append(Grant("indexer", "READ", "group", indexer_app, True))
    out.append(Grant("indexer", "DESCRIBE", "group", indexer_app, True))
    # the query worker: reads requests and the applied view, answers on the reply topics
    topic("query", s.topic_requests, "READ", "CREATE", "DESCRIBE_CONFIGS")
    topic("query", s.topic_applied, "READ", "CREATE", "DESCRIBE_CONFIGS")
    topic("query", s.topic_replies, "WRITE", "READ", "CREATE", "DESCRIBE_CONFIGS", prefixed=True)
    topic("query", s.topic_metrics, "WRITE", "READ", "CREATE", "DESCRIBE_CONFIGS")
    if s.debezium_topic:  # the Debezium bridge runs in the indexer: it reads envelopes, writes change events
        topic("indexer", s.debezium_topic, "READ", "DESCRIBE_CONFIGS")
        topic("indexer", s.topic_changes, "WRITE")
    for role in ("indexer", "query"):  # both follow the active generation (freshet reindex writes it, as admin)
        topic(role, s.topic_generations, "READ", "CREATE", "DESCRIBE_CONFIGS")
    for t in (s.topic_changes, s.topic_dead_letter):
        topic("query", t, "CREATE", "DESCRIBE_CONFIGS")
    topic("query", query_app, "READ", "WRITE", "CREATE", "DESCRIBE_CONFIGS", prefixed=True)
    out.append(Grant("query", "READ", "group", query_app, True))
    out.append(Grant("query", "DESCRIBE", "group", query_app, True))
    # a producer of document changes writes them, nothing else
    topic("producer", s.topic_changes, "WRITE")
    # a searcher writes requests and reads the reply topics
    topic("searcher", s.topic_requests, "WRITE")
    topic("searcher", s.topic_replies, "READ", prefixed=True)
    return out


def create_acls(admin: Any, items: Iterable[Grant]) -> int:
    """Create the ACLs (idempotent: the broker keeps one of each); their number."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    acls = [ACL(principal=f"User:{g.role}", host="*", operation=ACLOperation[g.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(
                    ResourceType[g.resource.upper()], g.name,
                    ACLResourcePatternType.PREFIXED if g.prefixed else ACLResourcePatternType.LITERAL))
            for g in items]
    result = admin.create_acls(acls)
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(acls)} ACLs not created: {failed[0]}")
    return len(acls)


# --- Weaviate -------------------------------------------------------------------------------
def weaviate_env(s: Secrets) -> dict[str, str]:
    """Environment of a secured Weaviate node: API keys only (no anonymous access), RBAC with
    ``admin`` as root, and a password on the nodes' internal cluster API."""
    users = [u for u in WEAVIATE_USERS if u != "cluster"]
    return {
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS": ",".join(s.weaviate_key(u) for u in users),
        "AUTHENTICATION_APIKEY_USERS": ",".join(users),
        "AUTHORIZATION_RBAC_ENABLED": "true",
        "AUTHORIZATION_RBAC_ROOT_USERS": "admin",
        "CLUSTER_BASIC_AUTH_USERNAME": "freshet-cluster",
        "CLUSTER_BASIC_AUTH_PASSWORD": s.weaviate_key("cluster"),
    }


def weaviate_permissions(collection: str) -> dict[str, list[Any]]:
    """Each Weaviate role's permissions on ``collection`` and every collection named from it
    (``collection*``: later generations of it)."""
    from weaviate.classes.rbac import Permissions

    pattern = f"{collection}*"
    return {
        "freshet-indexer": [
            Permissions.collections(collection=pattern, create_collection=True, read_config=True, update_config=True),
            Permissions.data(collection=pattern, create=True, read=True, update=True, delete=True),
            Permissions.tenants(collection=pattern, create=True, read=True, update=True, delete=True),
        ],
        "freshet-query": [
            Permissions.collections(collection=pattern, read_config=True),
            Permissions.data(collection=pattern, read=True),
            Permissions.tenants(collection=pattern, read=True),
        ],
    }


def grant_weaviate(client: Any, collection: str) -> None:
    """Create the roles (if missing) and give them to the indexer's and query worker's keys (as root)."""
    for role, permissions in weaviate_permissions(collection).items():
        if client.roles.exists(role):
            client.roles.add_permissions(permissions=permissions, role_name=role)
        else:
            client.roles.create(role_name=role, permissions=permissions)
    for user, role in WEAVIATE_ROLES.items():
        client.users.db.assign_roles(user_id=user, role_names=[role])


# --- what clients use -------------------------------------------------------------------------
def client_settings(s: Secrets, role: str) -> dict[str, object]:
    """Settings updates with which a process of ``role`` reaches the secured broker (SASL_SSL) and
    Weaviate (its key; the admin's for a role with none of its own)."""
    return {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": SCRAM, "kafka_sasl_username": role,
            "kafka_sasl_password": s.passwords[role], "kafka_ssl_cafile": str(s.ca),
            "weaviate_api_key": s.weaviate_keys[role if role in WEAVIATE_ROLES else "admin"]}


def mtls_settings(s: Secrets, role: str) -> dict[str, object]:
    """Settings updates for mutual TLS as ``role`` (a broker listener of protocol SSL)."""
    return {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(s.ca), "kafka_ssl_certfile": str(s.cert(role)),
            "kafka_ssl_keyfile": str(s.key(role))}
