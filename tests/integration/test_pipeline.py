"""The walking skeleton end to end: real Kafka, real Weaviate, real model, real workers."""

from __future__ import annotations

import json
import uuid

import pytest

from freshet.client import SearchClient
from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.deadletter import REASON, SOURCE_TOPIC
from schemas.search import CORRELATION_HEADER, SearchReply
from tests.integration.helpers import publish_and_wait, read_topic, send_raw

pytestmark = pytest.mark.integration

OTTERS = """# Sea otters

Sea otters hold hands while they sleep so that they do not drift apart on the ocean currents.

## Diet

They eat sea urchins, crabs and clams, and use stones as tools to crack the shells open.
"""
KAFKA = """# Stream processing

Apache Kafka stores streams of records in partitions, and consumers track their position with offsets.
"""


@pytest.fixture(scope="module")
def client(pipeline: Settings) -> SearchClient:
    c = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                     reply_topic=pipeline.topic_replies, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def indexed(pipeline: Settings) -> Settings:
    publish_and_wait(pipeline, [
        ChangeEvent(doc_id="animals/otters.md", op="upsert", version=1, content=OTTERS),
        ChangeEvent(doc_id="tech/kafka.md", op="upsert", version=1, content=KAFKA),
    ])
    return pipeline


@pytest.mark.parametrize(("mode", "query"), [("vector", "which animal uses rocks to open shellfish"),
                                             ("keyword", "urchins crabs clams"),
                                             ("hybrid", "otters sleeping holding hands")])
def test_a_published_document_is_found_over_the_request_topic(
        indexed: Settings, client: SearchClient, mode: str, query: str) -> None:
    reply = client.search(query, mode=mode, top_k=3)
    assert reply.status == "ok", reply.error
    assert reply.hits[0].doc_id == "animals/otters.md"
    assert reply.hits[0].title == "Sea otters"
    assert reply.hits[0].version == 1


def test_bad_records_are_dead_lettered_and_the_partition_keeps_moving(indexed: Settings, client: SearchClient) -> None:
    key = b"misc/walrus.md"  # one key: the bad record and the good one share a partition
    send_raw(indexed, indexed.topic_changes, key, b"{this is not json", headers=[("trace", b"t-1")])
    publish_and_wait(indexed, [ChangeEvent(doc_id="misc/walrus.md", op="upsert", version=1,
                                           content="# Walruses\n\nWalruses use their tusks to haul out onto ice.")])
    dead = read_topic(indexed, indexed.topic_dead_letter, where=lambda r: r.key == key)
    headers = dict(dead[0].headers)
    assert dead[0].value == b"{this is not json"
    assert headers[REASON] == b"invalid_json"
    assert headers[SOURCE_TOPIC] == indexed.topic_changes.encode()
    assert headers["trace"] == b"t-1"
    assert client.search("tusks haul out onto ice", mode="keyword", top_k=1).hits[0].doc_id == "misc/walrus.md"


def test_a_tombstone_removes_the_document(indexed: Settings, client: SearchClient) -> None:
    publish_and_wait(indexed, [ChangeEvent(doc_id="tmp/gone.md", op="upsert", version=1,
                                           content="# Zebra finches\n\nZebra finches sing learned songs.")])
    assert client.search("zebra finches songs", mode="keyword").hits[0].doc_id == "tmp/gone.md"
    send_raw(indexed, indexed.topic_changes, b"tmp/gone.md", None)
    publish_and_wait(indexed, [ChangeEvent(doc_id="tmp/marker.md", op="upsert", version=1, content="marker")])
    hits = client.search("zebra finches songs", mode="keyword").hits
    assert all(h.doc_id != "tmp/gone.md" for h in hits)


def test_a_malformed_request_gets_an_error_reply(indexed: Settings) -> None:
    rid = uuid.uuid4().hex
    send_raw(indexed, indexed.topic_requests, rid.encode(),
             json.dumps({"request_id": rid, "query": "x", "mode": "fuzzy", "reply_to": indexed.topic_replies}).encode(),
             headers=[(CORRELATION_HEADER, rid.encode())])
    replies = read_topic(indexed, indexed.topic_replies, where=lambda r: r.key == rid.encode())
    reply = SearchReply.model_validate_json(replies[0].value)
    assert reply.status == "error" and reply.error is not None
    assert reply.error.code == "schema" and "mode" in reply.error.message
    assert dict(replies[0].headers)[CORRELATION_HEADER] == rid.encode()


def test_an_unaddressable_request_is_dead_lettered(indexed: Settings) -> None:
    send_raw(indexed, indexed.topic_requests, None, b"\x00 not a request")
    dead = read_topic(indexed, indexed.topic_dead_letter, where=lambda r: r.value == b"\x00 not a request")
    assert dict(dead[0].headers)[REASON] == b"invalid_json"
