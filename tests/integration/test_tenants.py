"""Tenants as a boundary (FRESHET_MULTI_TENANCY=true) against the real services.

22 tenants (some whose names Weaviate does not take as they are, three that differ only in case)
each hold the same three doc ids with content of their own, and one document of their own; every
chunk carries its tenant's marker word. 1,200 searches go end to end over the request topic, each
for a random tenant, in a random mode, with random filters from the request contract (other
tenants' doc ids and tenant names among them) and query text drawn from any tenant's documents
(other tenants' markers among them): not one hit may come from another tenant. Then the refusals
(no tenant, a tenant a restricted worker does not serve, an event without a tenant) and
``freshet tenant delete``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshet.client import DocumentPublisher, SearchClient
from freshet.settings import Settings
from freshet.verify import read_objects, read_states, run_verify
from ops import procs
from ops.stack import Stack, drop_pipeline
from schemas.applied import AppliedRecord, parse_applied
from schemas.change import ChangeEvent, document_key
from schemas.deadletter import ERROR, REASON
from schemas.search import SearchReply
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import publish_and_wait, read_topic, records_now, send_raw, wait_healthy
from workers.tenancy import weaviate_tenant
from workers.weaviate_store import sync_client

pytestmark = pytest.mark.integration

TENANTS = ["acme", "Acme", "ACME", "globex", "initech", "umbrella", "hooli", "stark-industries", "wayne_enterprises",
           "acme corp", "globex/eu", "ünïcode gmbh", "t" * 100, "--acme", "tenant.with.dots", "cyberdyne", "tyrell",
           "soylent", "wonka", "oscorp", "aperture", "black mesa"]
SHARED_DOCS = ["handbook.md", "faq.md", "notes/roadmap.md"]
WORDS = ["glacier", "harbour", "orchard", "volcano", "lighthouse", "desert", "meadow", "canyon", "river", "forest",
         "invoice", "contract", "payroll", "pipeline", "kafka", "search", "index", "tenant", "archive", "ledger",
         "budget", "roadmap", "release", "outage", "backup", "cluster", "replica", "shard", "vector", "keyword"]
LANGS = ["en", "de", "fr"]
TAGS = ["red", "green", "blue", "gold"]
FIELDS = "lang:text,year:int,tags:text[]"
SEARCHES = 1_200
IN_FLIGHT = 100


def marker(tenant: str) -> str:
    """A word only ``tenant``'s chunks hold (it survives the keyword analysis as one word)."""
    return f"mark{TENANTS.index(tenant):02d}x"


def docs_of(tenant: str) -> list[str]:
    return [*SHARED_DOCS, f"own/{TENANTS.index(tenant):02d}.md"]


def document(tenant: str, doc_id: str, rng: random.Random) -> ChangeEvent:
    m = marker(tenant)
    first, second = (" ".join(rng.choices(WORDS, k=18)) for _ in range(2))
    title = f"{doc_id.split('/')[-1].removesuffix('.md')} of {tenant}"
    content = (f"# {title}\n\nThe {m} team writes about {first}; every line of it carries the marker {m}.\n\n"
               f"## Details\n\nMore from {m}: {second}, and the marker {m} once more.")
    return ChangeEvent(doc_id=doc_id, tenant=tenant, op="upsert", version=1, title=title, content=content,
                       metadata={"lang": rng.choice(LANGS), "year": rng.randint(2015, 2024),
                                 "tags": rng.sample(TAGS, rng.randint(1, 3))})


@pytest.fixture(scope="module")
def mt(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An indexer and a query worker with multi-tenancy, on their own topics and collection."""
    base = make_settings(endpoints, tmp_path_factory.mktemp("tenants"))
    settings = Settings(**{**base.model_dump(), "multi_tenancy": True, "metadata_fields": FIELDS,
                           "quality_interval_seconds": 5.0})  # the probes run (per tenant) during the module
    stack = Stack(settings)
    try:
        stack.up(["indexer", "query"])
        yield settings
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(settings)


@pytest.fixture(scope="module")
def corpus(mt: Settings) -> dict[str, list[ChangeEvent]]:
    """Every tenant's documents, published and applied."""
    rng = random.Random(20261205)
    events = {t: [document(t, d, rng) for d in docs_of(t)] for t in TENANTS}
    publish_and_wait(mt, [e for evs in events.values() for e in evs])
    return events


@pytest.fixture(scope="module")
def client(mt: Settings) -> Iterator[SearchClient]:
    c = SearchClient(mt.kafka_access, request_topic=mt.topic_requests, reply_topic=mt.topic_replies, timeout=60)
    yield c
    c.close()


def applied_chunks(settings: Settings) -> dict[str | None, set[str]]:
    """Tenant -> the chunk ids of its live documents, from the applied topic."""
    latest: dict[str, AppliedRecord] = {}
    for r in records_now(settings, settings.topic_applied):
        rec = parse_applied(r.value) if r.value is not None else None
        if isinstance(rec, AppliedRecord):
            latest[document_key(rec.tenant, rec.doc_id)] = rec
    out: dict[str | None, set[str]] = {}
    for rec in latest.values():
        if rec.op == "upsert":
            out.setdefault(rec.tenant, set()).update(rec.chunk_ids)
    return out


def shards(settings: Settings) -> set[str]:
    client = sync_client(settings.weaviate_host, settings.weaviate_http_port, settings.weaviate_grpc_port)
    try:
        return set(client.collections.use(settings.collection).tenants.get())
    finally:
        client.close()


def random_filter(rng: random.Random) -> dict[str, Any] | None:
    doc_ids = [d for t in TENANTS for d in docs_of(t)]
    leaves = [
        lambda: {"field": "doc_id", "value": rng.choice(doc_ids)},
        lambda: {"field": "doc_id", "op": "ne", "value": rng.choice(doc_ids)},
        lambda: {"field": "doc_id", "op": "in", "value": rng.sample(doc_ids, 3)},
        lambda: {"field": "tenant", "value": rng.choice(TENANTS)},
        lambda: {"field": "tenant", "op": "in", "value": rng.sample(TENANTS, 3)},
        lambda: {"field": "title", "value": rng.choice(["handbook", "faq", "roadmap", "of"])},
        lambda: {"field": "lang", "value": rng.choice(LANGS)},
        lambda: {"field": "lang", "op": "ne", "value": rng.choice(LANGS)},
        lambda: {"field": "year", "op": rng.choice(["gt", "gte", "lt", "lte"]), "value": rng.randint(2014, 2025)},
        lambda: {"field": "tags", "value": rng.choice(TAGS)},
        lambda: {"field": "tags", "op": "in", "value": rng.sample(TAGS, 2)},
    ]
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.65:
        return rng.choice(leaves)()
    return {rng.choice(["and", "or"]): [rng.choice(leaves)() for _ in range(rng.randint(2, 3))]}


def random_request(rng: random.Random, corpus: dict[str, list[ChangeEvent]]) -> tuple[str, dict[str, Any]]:
    """Query text drawn from any tenant's documents, and the request's other fields."""
    source = rng.choice(rng.choice(list(corpus.values())))
    words = (source.content or "").replace("#", " ").split()
    start = rng.randrange(len(words) - 4)
    mode = rng.choice(["hybrid", "vector", "keyword"])
    fields: dict[str, Any] = {"tenant": rng.choice(TENANTS), "mode": mode, "top_k": rng.randint(1, 20),
                              "group_by_doc": rng.random() < 0.3, "filters": random_filter(rng)}
    if mode == "hybrid" and rng.random() < 0.5:
        fields.update(alpha=round(rng.random(), 2), fusion=rng.choice(["relative_score", "ranked"]))
    return " ".join(words[start:start + rng.randint(1, 4)]), fields


def test_a_thousand_random_searches_never_reach_another_tenant(mt: Settings, corpus: dict[str, list[ChangeEvent]],
                                                                client: SearchClient) -> None:
    assert shards(mt) == {weaviate_tenant(t) for t in TENANTS}  # a shard per tenant, made by its first event
    chunks = applied_chunks(mt)
    assert set(chunks) == set(TENANTS) and all(chunks.values())
    rng = random.Random(7)
    started = time.monotonic()
    replies: list[tuple[dict[str, Any], SearchReply]] = []
    for wave in range(0, SEARCHES, IN_FLIGHT):  # a window of requests in flight, well within their deadlines
        sent: list[tuple[dict[str, Any], Future[SearchReply]]] = []
        for _ in range(min(IN_FLIGHT, SEARCHES - wave)):
            query, fields = random_request(rng, corpus)
            sent.append(({"query": query, **fields}, client.submit(query, timeout=60, **fields)))
        replies += [(req, fut.result(90)) for req, fut in sent]
    took = time.monotonic() - started
    foreign, hits, answered = [], 0, 0
    for req, reply in replies:
        assert reply.status == "ok", (req, reply.error)
        tenant = req["tenant"]
        answered += bool(reply.hits)
        for h in reply.hits:
            hits += 1
            if h.tenant != tenant or marker(tenant) not in h.text or h.chunk_id not in chunks[tenant] \
                    or h.doc_id not in docs_of(tenant):
                foreign.append((req, h.tenant, h.doc_id, h.text[:80]))
    assert foreign == [], f"{len(foreign)} hits from another tenant, e.g. {foreign[:3]}"
    assert len(replies) == SEARCHES and hits > SEARCHES and answered > SEARCHES // 3, (hits, answered)
    print(f"\n{SEARCHES} searches over Kafka in {took:.1f} s: {answered} with hits, {hits} hits, 0 foreign")


def test_the_same_doc_id_in_every_tenant_is_found_only_as_the_tenants_own(
        mt: Settings, corpus: dict[str, list[ChangeEvent]], client: SearchClient) -> None:
    futures = {(t, mode): client.submit(f"handbook {marker('acme')}", tenant=t, mode=mode, top_k=20,
                                        filters={"field": "doc_id", "value": "handbook.md"})
               for t in TENANTS for mode in ("hybrid", "vector", "keyword")}
    for (t, mode), fut in futures.items():
        reply = fut.result(90)
        assert reply.status == "ok", reply.error
        if mode != "keyword" or t == "acme":  # keyword: only acme's chunks hold acme's marker
            assert reply.hits, (t, mode)
        assert {(h.tenant, h.doc_id) for h in reply.hits} <= {(t, "handbook.md")}, (t, mode)
        assert all(marker(t) in h.text for h in reply.hits)


def test_a_search_without_a_tenant_is_an_error_and_a_tenant_without_a_shard_finds_nothing(
        mt: Settings, corpus: dict[str, list[ChangeEvent]], client: SearchClient) -> None:
    for mode in ("hybrid", "vector", "keyword"):
        reply = client.search("glacier harbour", mode=mode)
        assert reply.status == "error" and reply.error is not None and reply.error.code == "tenant_required", reply
        empty = client.search("glacier harbour", mode=mode, tenant="nobody-here")
        assert empty.status == "ok" and empty.hits == [], empty
    assert weaviate_tenant("nobody-here") not in shards(mt)  # a search makes no shard
    http = httpx.post(mt.worker_url("query", "/v1/search"), json={"request_id": "h-1", "query": "glacier"}, timeout=30)
    assert http.status_code == 400 and http.json()["error"]["code"] == "tenant_required"


@pytest.fixture
def restricted(mt: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A second query worker on the same collection and applied topic that serves two tenants, on a
    request topic and consumer group of its own."""
    settings = Settings(**{**mt.model_dump(), "home": tmp_path, "query_web_port": procs.free_port(),
                           "worker_instance": "query-restricted", "query_tenants": "acme, globex/eu",
                           "topic_requests": mt.topic_requests + "-r", "topic_replies": mt.topic_replies + "-r",
                           "consumer_group_prefix": mt.consumer_group_prefix + "-r"})
    log = tmp_path / "logs" / "query.log"
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    procs.spawn([sys.executable, "-m", "freshet.cli", "worker", "query"], log=log,
                pidfile=tmp_path / "run" / "query.pid", env=env)
    try:
        wait_healthy(settings.worker_url("query", "/healthz"), log)
        yield settings
    finally:
        Stack(settings).down(["query"])


def test_a_restricted_query_worker_answers_only_for_its_tenants(
        restricted: Settings, corpus: dict[str, list[ChangeEvent]]) -> None:
    client = SearchClient(restricted.kafka_access, request_topic=restricted.topic_requests,
                          reply_topic=restricted.topic_replies, timeout=60)
    try:
        for tenant in ("acme", "globex/eu"):
            ok = client.search(f"the {marker(tenant)} team", tenant=tenant, mode="hybrid")
            assert ok.status == "ok" and ok.hits and {h.tenant for h in ok.hits} == {tenant}, ok
        for tenant in ("Acme", "globex", "initech"):
            refused = client.search(f"the {marker(tenant)} team", tenant=tenant)
            assert refused.status == "error" and refused.error is not None, refused
            assert refused.error.code == "tenant_not_allowed" and repr(tenant) in refused.error.message
            assert "'acme'" not in refused.error.message and "globex/eu" not in refused.error.message  # never listed
        none = client.search("the team")
        assert none.error is not None and none.error.code == "tenant_required"
        fence = client.search("the team", tenant="acme", consistency={"doc_id": "faq.md", "tenant": "globex",
                                                                      "min_version": 1})
        assert fence.error is not None and fence.error.code == "tenant_not_allowed"
    finally:
        client.close()
    http = httpx.post(restricted.worker_url("query", "/v1/search"),
                      json={"request_id": "h-2", "query": "team", "tenant": "initech"}, timeout=30)
    assert http.status_code == 403 and http.json()["error"]["code"] == "tenant_not_allowed"


def test_an_event_without_a_tenant_is_dead_lettered_and_blocks_nothing(
        mt: Settings, corpus: dict[str, list[ChangeEvent]], client: SearchClient) -> None:
    publisher = DocumentPublisher(mt.kafka_access, mt.topic_changes)
    try:
        publisher.publish(ChangeEvent(doc_id="orphan.md", op="upsert", version=1, content="# Orphan\n\nNo tenant.")
                          ).result(30)
    finally:
        publisher.close()
    send_raw(mt, mt.topic_changes, b"orphan.md", None)  # a tombstone whose key names no tenant
    late = document("acme", "late.md", random.Random(1))
    publish_and_wait(mt, [late])  # published after both: applied all the same
    dead = read_topic(mt, mt.topic_dead_letter, count=2,
                      where=lambda r: dict(r.headers).get(REASON) == b"tenant_required")
    assert len(dead) == 2 and all(b"FRESHET_MULTI_TENANCY" in dict(r.headers)[ERROR] for r in dead)
    reply = client.search(f"{marker('acme')} marker", tenant="acme", filters={"field": "doc_id", "value": "late.md"})
    assert reply.status == "ok" and {h.doc_id for h in reply.hits} == {"late.md"}


def test_deleting_a_tenant_drops_its_shard_and_its_documents_only(
        mt: Settings, corpus: dict[str, list[ChangeEvent]], client: SearchClient) -> None:
    gone, kept = "Acme", ["acme", "ACME", "globex/eu"]  # same doc ids, names a case apart
    before = {t: client.search(f"the {marker(t)} team", tenant=t, top_k=20) for t in [gone, *kept]}
    assert all(r.hits for r in before.values())
    done = subprocess.run([sys.executable, "-m", "freshet.cli", "tenant", "delete", gone, "--yes", "--timeout", "120"],
                          env={**os.environ, **mt.as_env()}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"shard {gone!r} dropped; 4 delete event(s) published and applied" in done.stdout
    assert weaviate_tenant(gone) not in shards(mt) and len(shards(mt)) == len(TENANTS) - 1
    for mode in ("hybrid", "vector", "keyword"):
        after = client.search(f"the {marker(gone)} team", tenant=gone, mode=mode, top_k=20)
        assert after.status == "ok" and after.hits == [], after
    for t in kept:
        again = client.search(f"the {marker(t)} team", tenant=t, top_k=20)
        assert [h.chunk_id for h in again.hits] == [h.chunk_id for h in before[t].hits]
    states = read_states(mt)
    assert not [k for k, st in states.items() if k.startswith(gone + "\x1f") and not st.deleted]
    assert {k for k, st in states.items() if k.startswith(gone + "\x1f") and st.deleted} == \
        {document_key(gone, d) for d in docs_of(gone)}
    objects, _ = read_objects(mt, vectors=False)
    assert not [o for o in objects if o.key.startswith(gone + "\x1f")]
    assert run_verify(mt) == []  # the index equals a fresh load of the changes topic, deletes included


def test_no_worker_logged_a_fault_a_failed_probe_or_a_dead_agent(mt: Settings) -> None:
    """The probes and the indexer's deletes meet tenant shards (some dropped) and never fail on them."""
    for role in ("indexer", "query"):
        text = (mt.home / "logs" / f"{role}.log").read_text(encoding="utf-8")
        bad = [line for line in text.splitlines()
               if any(w in line for w in ("probe_failed", "weaviate_fault", "agent_died", "Traceback"))]
        assert bad == [], f"{role}: {bad[:5]}"
    assert "quality_probed" in (mt.home / "logs" / "query.log").read_text(encoding="utf-8")


def test_without_multi_tenancy_deleting_a_tenant_publishes_its_deletes_alone(indexer_only: Settings) -> None:
    rng = random.Random(3)
    events = [document(t, d, rng) for t in ("acme", "Acme", "globex") for d in SHARED_DOCS]
    publish_and_wait(indexer_only, [*events, ChangeEvent(doc_id="handbook.md", op="upsert", version=1,
                                                         content="# Handbook\n\nOf nobody in particular.")])
    done = subprocess.run([sys.executable, "-m", "freshet.cli", "tenant", "delete", "Acme", "--yes"],
                          env={**os.environ, **indexer_only.as_env()}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no shard (FRESHET_MULTI_TENANCY=false); 3 delete event(s) published and applied" in done.stdout
    objects, _ = read_objects(indexer_only, vectors=False)
    assert {o.key.partition("\x1f")[0] if "\x1f" in o.key else None for o in objects} == {"acme", "globex", None}
    live = {k for k, st in read_states(indexer_only).items() if not st.deleted}
    assert live == {document_key(t, d) for t in ("acme", "globex") for d in SHARED_DOCS} | {"handbook.md"}
    assert run_verify(indexer_only) == []
