"""The secured local stack's pure parts: broker properties, users, ACLs per role, and who gets which credentials."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from freshet.errors import StackError
from freshet.settings import Settings
from ops import cluster, secure
from ops.cluster import Shape


def _ports() -> cluster.Ports:
    counter = itertools.count(40000, 2)
    return cluster.Ports(free=lambda: next(counter), free_pair=lambda: next(counter), taken=lambda p: False)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture
def secrets(tmp_path: Path) -> secure.Secrets:
    return secure.ensure(tmp_path)


def test_secrets_are_made_once_and_kept_private(tmp_path: Path, secrets: secure.Secrets) -> None:
    assert secure.ensure(tmp_path).passwords == secrets.passwords, "made once, then read back"
    assert set(secrets.passwords) == set(secure.ROLES)
    assert len({secrets.password(r) for r in secure.ROLES}) == len(secure.ROLES), "one password per role"
    for name in ("users.json", "ca.key", "broker.pem", *(f"{r}.key" for r in secure.ROLES)):
        assert (secrets.dir / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    assert json.loads((secrets.dir / "users.json").read_text())["admin"] == secrets.password("admin")


def test_a_secured_broker_listens_only_with_tls_and_authorizes_every_request(tmp_path: Path,
                                                                              secrets: secure.Secrets) -> None:
    s = Settings(home=tmp_path)
    layout = cluster.plan(s, Shape(secure=True), None, _ports())
    props = _props(cluster.kafka_properties(s, layout, layout.kafka[0], tmp_path / "data", secrets))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL,SSL:SSL"
    assert props["listener.name.ssl.ssl.client.auth"] == "required", "the TLS listener wants a client certificate"
    assert "PLAINTEXT" not in props["listeners"] + props["advertised.listeners"]
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    plain = _props(cluster.kafka_properties(s, layout, layout.kafka[0], tmp_path / "data"))
    assert plain["listeners"].startswith("PLAINTEXT://") and "authorizer.class.name" not in plain
    args = secure.format_args(secrets)
    assert args.count("--add-scram") == len(secure.ROLES)


def test_the_mutual_tls_port_is_given_once_and_kept(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    first = cluster.plan(s, Shape(brokers=2, secure=True), None, _ports())
    assert [n.tls_port for n in first.kafka] == [9192, 9194]
    again = cluster.plan(s, Shape(brokers=2, secure=True), cluster.Layout.from_json(first.to_json()), _ports())
    assert again.kafka == first.kafka
    assert [n.tls_port for n in cluster.plan(s, Shape(brokers=2), None, _ports()).kafka] == [0, 0]


def test_each_role_gets_only_the_rights_it_needs(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    rights: dict[str, set[tuple[str, str, str]]] = {}
    for g in secure.grants(s):
        rights.setdefault(g.role, set()).add((g.operation, g.resource, g.name + ("*" if g.prefixed else "")))
    assert rights["producer"] == {("DESCRIBE", "topic", s.topic_changes), ("WRITE", "topic", s.topic_changes)}
    replies = s.topic_replies + "*"
    assert rights["searcher"] == {("DESCRIBE", "topic", s.topic_requests), ("WRITE", "topic", s.topic_requests),
                                  ("DESCRIBE", "topic", replies), ("READ", "topic", replies)}
    assert ("READ", "topic", s.topic_changes) in rights["indexer"]
    assert not any(op == "WRITE" and name == s.topic_changes for op, _, name in rights["indexer"] | rights["query"])
    assert ("WRITE", "topic", s.topic_replies + "*") in rights["query"]
    assert "admin" not in rights, "the admin is a super user, not a holder of ACLs"


def test_the_cli_gets_the_admin_and_each_worker_its_own_user(tmp_path: Path, secrets: secure.Secrets) -> None:
    s = Settings(home=tmp_path)
    layout = cluster.plan(s, Shape(secure=True), None, _ports())
    cli = cluster.cluster_settings(s, layout).kafka_access
    assert (cli.security_protocol, cli.sasl_username, cli.ssl_cafile) == ("SASL_SSL", "admin", str(secrets.ca))
    assert cli.sasl_password.get_secret_value() == secrets.password("admin")
    for w in layout.workers:
        env = cluster.worker_env(s, layout, w)
        assert (env["FRESHET_KAFKA_SASL_USERNAME"], env["FRESHET_KAFKA_SASL_PASSWORD"]) == \
            (w.role, secrets.password(w.role))
    mine = Settings(home=tmp_path, kafka_sasl_username="searcher", kafka_sasl_password="mine",
                    weaviate_api_key="my-key")
    as_me = cluster.cluster_settings(mine, layout)
    assert (as_me.kafka_access.sasl_username, as_me.kafka_access.sasl_password.get_secret_value(),
            as_me.weaviate_api_key.get_secret_value()) == ("searcher", "mine", "my-key"), "what is set by hand wins"
    assert (as_me.kafka_access.security_protocol, as_me.kafka_access.ssl_cafile) == ("SASL_SSL", str(secrets.ca)), \
        "and the rest is filled in"
    assert cli.sasl_username == "admin" and cluster.cluster_settings(s, layout).weaviate_api_key.get_secret_value() \
        == secrets.weaviate_key("admin")
    plain = cluster.plan(s, Shape(), None, _ports())
    assert cluster.cluster_settings(s, plain).kafka_access.security_protocol == "PLAINTEXT"


def test_a_home_with_kafka_data_keeps_its_security(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("x")
    with pytest.raises(StackError, match="plain Kafka, so it cannot start secured"):
        cluster.check_reshape(tmp_path, Shape(), Shape(secure=True))
    with pytest.raises(StackError, match="SECURE=1"):
        cluster.check_reshape(tmp_path, Shape(secure=True), Shape())
    cluster.check_reshape(tmp_path, Shape(secure=True), Shape(secure=True))
    assert cluster.requested_shape(tmp_path, secure=True).secure
