"""The query worker against the real services: filters, grouping, fences, deadlines, bad requests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from freshet.client import DocumentPublisher, SearchClient
from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from schemas.search import CORRELATION_HEADER, SearchReply
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import publish_and_wait, read_topic, records_now

pytestmark = pytest.mark.integration

FIELDS = "lang:text,year:int,tags:text[],published:date,score:number"
TOPICS = ["lighthouse", "glacier", "orchard", "volcano", "harbour", "desert"]


def doc(i: int, version: int = 1) -> ChangeEvent:
    topic = TOPICS[i]
    sections = "\n\n".join(
        f"## Part {s}\n\nThe {topic} note, part {s}, version {version}: how the {topic} changes with the "
        f"seasons and what a visitor to the {topic} should know about section {s}." for s in range(3))
    return ChangeEvent(
        doc_id=f"notes/{topic}.md", op="upsert", version=version, title=f"The {topic}",
        content=f"# The {topic}\n\n{sections}",
        metadata={"lang": "de" if i % 2 else "en", "year": 2019 + i, "tags": [topic, "even" if i % 2 == 0 else "odd"],
                  "published": f"202{i}-03-01T00:00:00Z", "score": i / 2},
    )


@pytest.fixture(scope="module")
def qpipe(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    base = make_settings(endpoints, tmp_path_factory.mktemp("query"))
    settings = Settings(**{**base.model_dump(), "metadata_fields": FIELDS})
    stack = Stack(settings)
    try:
        stack.up(["indexer", "query"])
        publish_and_wait(settings, [doc(i) for i in range(len(TOPICS))])
        yield settings
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(settings)


@pytest.fixture(scope="module")
def client(qpipe: Settings) -> Iterator[SearchClient]:
    c = SearchClient(qpipe.bootstrap_servers, request_topic=qpipe.topic_requests, reply_topic=qpipe.topic_replies,
                     timeout=60)
    yield c
    c.close()


def docs_of(reply: SearchReply) -> set[str]:
    assert reply.status == "ok", reply.error
    return {h.doc_id for h in reply.hits}


def test_filters_on_metadata_combine_with_and_or(client: SearchClient) -> None:
    everything = {f"notes/{t}.md" for t in TOPICS}
    assert docs_of(client.search("seasons and visitors", mode="vector", top_k=50)) == everything
    recent = client.search("seasons", top_k=50, filters={"field": "year", "op": "gte", "value": 2022})
    assert docs_of(recent) == {"notes/volcano.md", "notes/harbour.md", "notes/desert.md"}
    assert all(h.metadata["year"] >= 2022 for h in recent.hits)  # type: ignore[operator]
    mixed = client.search("seasons", top_k=50, filters={"or": [
        {"and": [{"field": "lang", "value": "de"}, {"field": "score", "op": "lt", "value": 1.0}]},
        {"field": "tags", "op": "in", "value": ["desert", "glacier"]},
    ]})
    assert docs_of(mixed) == {"notes/glacier.md", "notes/desert.md"}
    dated = client.search("seasons", top_k=50, filters={"and": [
        {"field": "published", "op": "gte", "value": "2021-01-01T00:00:00Z"},
        {"field": "published", "op": "lt", "value": "2023-01-01T00:00:00Z"},
    ]})
    assert docs_of(dated) == {"notes/glacier.md", "notes/orchard.md"}
    by_id = client.search("seasons", top_k=50, filters={"field": "doc_id", "op": "ne", "value": "notes/orchard.md"})
    assert docs_of(by_id) == everything - {"notes/orchard.md"}


def test_group_by_doc_gives_each_document_once_with_its_best_chunk(client: SearchClient) -> None:
    flat = client.search("what a visitor to the glacier should know", mode="vector", top_k=12)
    assert len({h.doc_id for h in flat.hits}) < len(flat.hits)  # several chunks per document
    grouped = client.search("what a visitor to the glacier should know", mode="vector", top_k=6, group_by_doc=True)
    ids = [h.doc_id for h in grouped.hits]
    assert len(ids) == len(set(ids)) == 6
    assert grouped.hits[0].chunk_id == flat.hits[0].chunk_id
    assert [h.score for h in grouped.hits] == sorted((h.score for h in grouped.hits), reverse=True)


def test_keyword_and_hybrid_modes_find_the_named_document(client: SearchClient) -> None:
    for mode in ("keyword", "hybrid", "vector"):
        reply = client.search("orchard", mode=mode, top_k=3)
        assert reply.hits and reply.hits[0].doc_id == "notes/orchard.md", mode
        assert reply.hits[0].version == 1 and reply.hits[0].metadata["lang"] == "en"


@pytest.mark.parametrize("fusion", ["relative_score", "ranked"])
def test_hybrid_hits_carry_a_fused_score_in_0_1_and_each_sides_own(client: SearchClient, fusion: str) -> None:
    reply = client.search("what a visitor to the glacier should know", mode="hybrid", fusion=fusion, top_k=8)
    assert reply.status == "ok" and len(reply.hits) == 8
    scores = [h.score for h in reply.hits]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert len(set(scores)) > 1, f"the fused scores tie: {scores}"  # the old rank-based score tied across the top hits
    top = reply.hits[0]
    assert top.doc_id == "notes/glacier.md"
    assert top.vector_score is not None and 0.0 < top.vector_score <= 1.0
    assert top.keyword_score is not None and top.keyword_score > 0.0
    alone = client.search("what a visitor to the glacier should know", mode="vector", top_k=8)
    assert {h.chunk_id: h.score for h in alone.hits}[top.chunk_id] == pytest.approx(top.vector_score, abs=1e-4)
    words = client.search("what a visitor to the glacier should know", mode="keyword", top_k=8)
    assert words.hits[0].keyword_score == words.hits[0].score and words.hits[0].vector_score is None


def test_an_offset_fence_gives_read_your_writes(qpipe: Settings, client: SearchClient) -> None:
    publisher = DocumentPublisher(qpipe.bootstrap_servers, qpipe.topic_changes)
    try:
        pos = publisher.publish(doc(3, version=2)).result(timeout=30)
    finally:
        publisher.close()
    reply = client.search("volcano", mode="keyword", top_k=5, filters={"field": "doc_id", "value": "notes/volcano.md"},
                          consistency=[{"partition": pos.partition, "offset": pos.offset}])
    assert reply.status == "ok" and reply.hits
    assert {h.version for h in reply.hits} == {2}
    assert any("version 2" in h.text for h in reply.hits)
    assert not any("version 1" in h.text for h in reply.hits)


def test_a_document_fence_waits_for_the_version(qpipe: Settings, client: SearchClient) -> None:
    fut = client.submit("harbour", mode="keyword", top_k=5,
                        consistency={"doc_id": "notes/harbour.md", "min_version": 2},
                        filters={"field": "doc_id", "value": "notes/harbour.md"})
    time.sleep(1.0)
    assert not fut.done(), "answered before the fenced version existed"
    publish_and_wait(qpipe, [doc(4, version=2)])
    reply = fut.result(timeout=60)
    assert reply.status == "ok" and {h.version for h in reply.hits} == {2}
    assert reply.timings.wait_ms > 500


def test_an_unmet_fence_times_out_within_the_deadline(client: SearchClient) -> None:
    started = time.monotonic()
    reply = client.search("desert", deadline_ms=1500, consistency={"doc_id": "notes/desert.md", "min_version": 99})
    assert reply.status == "timeout" and reply.error is not None
    assert reply.error.code == "deadline_exceeded" and "fence" in reply.error.message
    assert time.monotonic() - started < 10


def test_a_request_read_after_its_deadline_is_dropped_and_counted(qpipe: Settings, client: SearchClient) -> None:
    rid = uuid.uuid4().hex
    body = {"request_id": rid, "query": "glacier", "deadline_ms": 1000, "reply_to": qpipe.topic_replies}
    producer = KafkaProducer(bootstrap_servers=qpipe.bootstrap_servers.split(","), acks="all")
    try:  # stamped a minute ago: its deadline passed before any worker could read it
        producer.send(qpipe.topic_requests, key=rid.encode(), value=json.dumps(body).encode(),
                      timestamp_ms=int((time.time() - 60) * 1000)).get(timeout=30)
    finally:
        producer.close()
    deadline = time.monotonic() + 30
    while httpx.get(f"http://127.0.0.1:{qpipe.query_web_port}/stats", timeout=10).json()["expired_dropped"] < 1:
        assert time.monotonic() < deadline, "the expired request was not counted"
        time.sleep(0.2)
    assert not records_now(qpipe, qpipe.topic_replies, where=lambda r: r.key == rid.encode())


@pytest.mark.parametrize(("fields", "code", "words"), [
    ({"mode": "fuzzy"}, "schema", "mode"),
    ({"top_k": 0}, "schema", "top_k"),
    ({"top_k": 101}, "schema", "top_k"),
    ({"filters": {"field": "colour", "value": "red"}}, "unknown_filter_field", "colour"),
    ({"filters": {"field": "year", "op": "gte", "value": "soon"}}, "invalid_filter", "year"),
    ({"query": "x" * 5000}, "schema", "query"),
])
def test_bad_requests_get_a_precise_error_reply(qpipe: Settings, fields: dict[str, object], code: str,
                                                words: str) -> None:
    rid = uuid.uuid4().hex
    body = {"request_id": rid, "query": "glacier", "reply_to": qpipe.topic_replies, **fields}
    producer = KafkaProducer(bootstrap_servers=qpipe.bootstrap_servers.split(","), acks="all")
    try:
        producer.send(qpipe.topic_requests, key=rid.encode(), value=json.dumps(body).encode(),
                      headers=[(CORRELATION_HEADER, rid.encode())]).get(timeout=30)
    finally:
        producer.close()
    [record] = read_topic(qpipe, qpipe.topic_replies, where=lambda r: r.key == rid.encode(), timeout=60)
    reply = SearchReply.model_validate_json(record.value)
    assert dict(record.headers)[CORRELATION_HEADER] == rid.encode()
    assert reply.status == "error" and reply.error is not None
    assert reply.error.code == code and words in reply.error.message


def test_cli_search_takes_filters(qpipe: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from freshet.cli import main

    env = qpipe.as_env()
    result = CliRunner().invoke(main, ["search", "seasons", "--json", "-k", "50", "--filter", "year>=2023",
                                       "--filter", "tags in desert,harbour"], env=env)
    assert result.exit_code == 0, result.output
    reply = SearchReply.model_validate_json(result.output)
    assert {h.doc_id for h in reply.hits} == {"notes/harbour.md", "notes/desert.md"}
