"""The secured local stack (``make up SECURE=1``): Kafka with TLS, SCRAM users and ACLs per role;
Weaviate with API keys and roles.

A broker and a Weaviate of their own (their own home and ports, started with ``secure=True``); the
workers connect as their own users (``indexer``, ``query``) with their own Weaviate keys; the CLI's
settings find the admin's credentials in the home by themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr

from freshet.client import SearchClient
from freshet.kafka_access import KafkaAccess
from freshet.publishing import publish_events
from freshet.settings import Settings
from ops import cluster, procs, secure
from ops.cluster import Shape
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent

pytestmark = pytest.mark.integration


@dataclasses.dataclass(frozen=True)
class Secured:
    base: Settings
    """What a process of this home starts from (no credentials: the layout adds them)."""
    admin: Settings
    """The CLI's settings: the home's admin credentials, found by themselves."""
    secrets: secure.Secrets


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    home = tmp_path_factory.mktemp("secured")
    tag = f"sec{uuid.uuid4().hex[:8]}"
    base = Settings(home=home, kafka_port=procs.free_port(), kafka_controller_port=procs.free_port(),
                    weaviate_http_port=procs.free_port(), weaviate_grpc_port=procs.free_port(),
                    collection=f"Sec{tag}", consumer_group_prefix=tag,
                    indexer_web_port=procs.free_port(), query_web_port=procs.free_port(), topic_partitions=2,
                    index_linger_seconds=0.2, start_timeout_seconds=180)
    stack = Stack(base, Shape(secure=True))
    try:
        stack.up(["kafka", "weaviate"])
        layout = cluster.load(home)
        assert layout is not None and layout.shape.secure
        admin = cluster.cluster_settings(base, layout)
        found = secure.load(home)
        assert found is not None
        yield Secured(base, admin, found)
    finally:
        Stack(base).down(["indexer", "query", "kafka", "weaviate"])


def _as(s: Secured, role: str, **changes: Any) -> KafkaAccess:
    fields: dict[str, Any] = {"sasl_username": role, "sasl_password": SecretStr(s.secrets.password(role)), **changes}
    return dataclasses.replace(s.admin.kafka_access, **fields)


def _refusal(access: KafkaAccess) -> str:
    """'' if an aiokafka client connects with ``access``, else why not (quick: aiokafka fails fast)."""
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    async def attempt() -> str:
        client = AIOKafkaAdminClient(**access.aiokafka(), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(client.start(), 20)
            return ""
        except Exception as exc:  # noqa: BLE001 - whatever refused us is the answer
            return f"{type(exc).__name__}: {exc}"
        finally:
            await client.close()

    return asyncio.run(attempt())


def test_clients_without_credentials_with_a_wrong_password_or_without_tls_are_refused(secured: Secured) -> None:
    s = secured
    assert _refusal(s.admin.kafka_access) == "", "the admin's own credentials connect"
    assert _refusal(_as(s, "searcher")) == "", "so do a role's"
    bootstrap = s.admin.bootstrap_servers
    refused = {
        "no credentials, no TLS": KafkaAccess(bootstrap),
        "a wrong password": _as(s, "searcher", sasl_password=SecretStr("not-the-password")),
        "another role's password": _as(s, "searcher", sasl_password=SecretStr(s.secrets.password("producer"))),
        "SASL without TLS": _as(s, "searcher", security_protocol="SASL_PLAINTEXT"),
        "TLS without SASL": KafkaAccess(bootstrap, "SSL", ssl_cafile=str(s.secrets.ca)),
        "a CA that did not sign the broker": _as(s, "searcher", ssl_cafile=""),
    }
    for why, access in refused.items():
        assert _refusal(access) != "", f"a client with {why} was let in"


def test_a_refused_client_is_told_which_setting_to_change(secured: Secured) -> None:
    from freshet.errors import ConfigError, TransientError
    from workers.kafka_admin import broker_info

    s = secured
    # a PLAINTEXT client's bytes make the TLS listener hang up: the client reads either the TLS alert
    # as a frame (a refusal: ConfigError) or just the hang-up (also what a restarting broker does: a
    # transient fault, with the hint); both name the setting
    for access, setting, errors in (
            (_as(s, "searcher", sasl_password=SecretStr("wrong")), "FRESHET_KAFKA_SASL_PASSWORD", (ConfigError,)),
            (_as(s, "searcher", ssl_cafile=""), "FRESHET_KAFKA_SSL_CAFILE", (ConfigError,)),
            (KafkaAccess(s.admin.bootstrap_servers), "FRESHET_KAFKA_SECURITY_PROTOCOL", (ConfigError, TransientError))):
        with pytest.raises(errors, match=setting) as err:
            broker_info(access)
        for secret in s.secrets.all_secrets():
            assert secret not in str(err.value)
    # the same through the CLI, with freshet's own logging (which silences the Kafka client's lines)
    env = {**s.base.as_env(), "HF_HUB_OFFLINE": "1", "FRESHET_KAFKA_SASL_USERNAME": "query",
           "FRESHET_KAFKA_SASL_PASSWORD": "wrong-password", "FRESHET_START_TIMEOUT_SECONDS": "120"}
    worker = subprocess.run([sys.executable, "-m", "freshet.cli", "worker", "query"], env=env, capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    said = worker.stdout + worker.stderr
    assert worker.returncode != 0 and "FRESHET_KAFKA_SASL_PASSWORD" in said, said[-2000:]
    assert "wrong-password" not in said and not any(secret in said for secret in s.secrets.all_secrets())


def _send(access: KafkaAccess, topic: str) -> None:
    producer = KafkaProducer(**access.kafka_python(), acks="all", max_block_ms=15_000, retries=0)
    try:
        producer.send(topic, key=b"k", value=b"{}").get(timeout=20)
    finally:
        producer.close(timeout=5)


def test_each_role_writes_only_where_its_acls_allow(secured: Secured) -> None:
    s, t = secured, secured.admin
    with pytest.raises(TopicAuthorizationFailedError):
        _send(_as(s, "searcher"), t.topic_changes)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(_as(s, "producer"), t.topic_requests)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(_as(s, "query"), t.topic_changes)
    _send(_as(s, "producer"), t.topic_changes)  # what each may do, it can
    _send(_as(s, "searcher"), t.topic_requests)


def test_mutual_tls_is_the_alternative_with_the_certificate_naming_the_role(secured: Secured) -> None:
    s = secured
    layout = cluster.load(s.base.home)
    assert layout is not None and layout.kafka[0].tls_port
    at = f"{s.base.kafka_host}:{layout.kafka[0].tls_port}"

    def cert(role: str) -> KafkaAccess:
        return KafkaAccess(at, "SSL", ssl_cafile=str(s.secrets.ca), ssl_certfile=str(s.secrets.cert(role)),
                           ssl_keyfile=str(s.secrets.key(role)))

    assert _refusal(cert("searcher")) == ""
    assert _refusal(KafkaAccess(at, "SSL", ssl_cafile=str(s.secrets.ca))) != "", "no client certificate: refused"
    _send(cert("searcher"), s.admin.topic_requests)  # the certificate's CN is the principal, with its ACLs
    with pytest.raises(TopicAuthorizationFailedError):
        _send(cert("searcher"), s.admin.topic_changes)
    _send(cert("producer"), s.admin.topic_changes)


def test_the_workers_run_as_their_own_users_and_a_search_round_trip_works(secured: Secured) -> None:
    s = secured
    broker_log = s.base.home / "logs" / "kafka.log"
    mark = broker_log.stat().st_size
    stack = Stack(s.base)
    try:
        stack.up(["indexer", "query"])
        events = [ChangeEvent(op="upsert", doc_id=f"secure/{i}", version=1, tenant="acme",
                              content=f"# Note {i}\n\nThe broker only talks TLS to users it knows, note {i}.")
                  for i in range(3)]
        publish_events(s.admin, events, wait=True, timeout=120)
        searcher = dataclasses.replace(s.admin.kafka_access, sasl_username="searcher",
                                       sasl_password=SecretStr(s.secrets.password("searcher")))
        client = SearchClient(searcher, request_topic=s.admin.topic_requests, reply_topic=s.admin.topic_replies,
                              timeout=60)
        try:
            reply = client.search("broker talks TLS", tenant="acme", top_k=3)
        finally:
            client.close()
        assert reply.status == "ok" and "secure/0" in {h.doc_id for h in reply.hits}, reply
        # the demo, as `make demo` runs it: the CLI is given no credential and finds the home's by itself
        env = {**s.base.as_env(), "HF_HUB_OFFLINE": "1"}
        assert not env["FRESHET_KAFKA_SASL_PASSWORD"] and not env["FRESHET_WEAVIATE_API_KEY"]
        demo = subprocess.run([sys.executable, "-m", "freshet.cli", "demo"], env=env, capture_output=True, text=True,
                              timeout=600, cwd=Path(__file__).resolve().parents[2])
        (s.base.home / "logs" / "demo-output.log").write_text(demo.stdout + demo.stderr)
        assert demo.returncode == 0, demo.stderr[-2000:]
        assert "ok, " in demo.stdout and "re-embedded" in demo.stdout, demo.stdout[-2000:]
        # the workers' users had every right they needed: the broker logs each denial of an authorizer
        with broker_log.open("rb") as fh:
            fh.seek(mark)
            denials = [line for line in fh.read().decode(errors="replace").splitlines() if " is Denied " in line]
        assert not denials, denials[:3]
        for w in stack.layout.workers:
            env = cluster.worker_env(s.base, stack.layout, w)
            assert env["FRESHET_KAFKA_SASL_USERNAME"] == w.role
            assert env["FRESHET_KAFKA_SASL_PASSWORD"] == s.secrets.password(w.role)
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(s.admin)


def test_the_query_workers_weaviate_key_reads_and_cannot_write(secured: Secured) -> None:
    from weaviate.exceptions import InsufficientPermissionsError, UnexpectedStatusCodeError

    from workers.weaviate_store import client_for

    s = secured
    admin = client_for(s.admin)
    try:
        if not admin.collections.exists(s.admin.collection):
            admin.collections.create(s.admin.collection)
    finally:
        admin.close()
    as_indexer = client_for(_weaviate_as(s, "indexer"))
    try:
        as_indexer.collections.get(s.admin.collection).data.insert({"text": "written by the indexer"})
    finally:
        as_indexer.close()
    as_query = client_for(_weaviate_as(s, "query"))
    try:
        coll = as_query.collections.get(s.admin.collection)
        assert len(coll.query.fetch_objects(limit=5).objects) >= 1, "the query worker's key reads"
        with pytest.raises(InsufficientPermissionsError):
            coll.data.insert({"text": "written by the query worker"})
        with pytest.raises(InsufficientPermissionsError):
            as_query.collections.create(f"{s.admin.collection}Other")
    finally:
        as_query.close()
    with pytest.raises(UnexpectedStatusCodeError, match="401"):
        client_for(Settings(**{**s.admin.model_dump(), "weaviate_api_key": SecretStr("")})).close()
    with pytest.raises(UnexpectedStatusCodeError, match="401"):
        client_for(Settings(**{**s.admin.model_dump(), "weaviate_api_key": SecretStr("wrong")})).close()


def _weaviate_as(s: Secured, role: str) -> Settings:
    return Settings(**{**s.admin.model_dump(), "weaviate_api_key": SecretStr(s.secrets.weaviate_key(role))})


def test_no_secret_appears_in_a_log_line_or_the_status(secured: Secured) -> None:
    s = secured
    env = {**s.base.as_env(), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "freshet.cli", "stack", "status"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    status = out.stdout + out.stderr
    assert "secured: SASL_SSL as admin (SCRAM-SHA-512), ACLs on" in status, status
    assert "secured: API keys and roles" in status, status
    texts = {"make status": status, **{str(p): p.read_text(errors="replace")
                                       for p in (s.base.home / "logs").glob("*.log")}}
    assert len(texts) >= 5, "the status, and the broker's, Weaviate's and both workers' logs"
    for secret in s.secrets.all_secrets():
        for where, text in texts.items():
            assert secret not in text, f"a secret ({secret[:3]}...) is in {where}"
    users = json.loads((s.secrets.dir / "users.json").read_text())
    assert set(users) == set(secure.ROLES)
    assert oct((s.secrets.dir / "users.json").stat().st_mode & 0o777) == "0o600"
    assert oct((s.base.home / "kafka" / "server.properties").stat().st_mode & 0o777) == "0o600"
