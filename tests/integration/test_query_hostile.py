"""The query worker against hostile requests, on a real broker: reply topics it must not write to,
producer timestamps in the future, headers and ids that are not valid text. The worker answers
(or dead-letters) each, and keeps answering the next good request."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline
from schemas.deadletter import REASON
from schemas.search import CORRELATION_HEADER, REPLY_TOPIC_HEADER, SearchReply
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A query worker alone (no documents are needed) on a pipeline of its own."""
    settings = make_settings(endpoints, tmp_path_factory.mktemp("hostile"))
    stack = Stack(settings)
    try:
        stack.up(["query"])
        yield settings
    finally:
        stack.down(["query"])
        drop_pipeline(settings)


def send(s: Settings, value: bytes, *, headers: list[tuple[str, bytes]] | None = None,
         timestamp_ms: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers.split(","), acks="all")
    try:
        producer.send(s.topic_requests, value=value, headers=headers or [], timestamp_ms=timestamp_ms).get(timeout=30)
    finally:
        producer.close()


def reply_record(s: Settings, key: bytes, timeout: float = 30) -> Any:
    [record] = read_topic(s, s.topic_replies, where=lambda r: r.key == key, timeout=timeout)
    return record


def assert_answers_a_good_request(s: Settings) -> None:
    rid = uuid.uuid4().hex
    send(s, json.dumps({"request_id": rid, "query": "anything", "mode": "keyword"}).encode())
    reply = SearchReply.model_validate_json(reply_record(s, rid.encode()).value)
    assert reply.status == "ok", reply.error


@pytest.mark.parametrize("via", ["reply_to", "header"])
def test_a_reply_to_a_topic_freshet_uses_is_refused_on_the_default_topic(worker: Settings, via: str) -> None:
    # the compacted applied topic (a reply keyed like a document erases its record) and the
    # indexer's state changelog (a reply there crashes the indexer when it recovers its table)
    changelog = f"{worker.consumer_group_prefix}-indexer-doc-state-changelog"
    target = worker.topic_applied if via == "reply_to" else changelog
    rid = f"notes/{uuid.uuid4().hex}.md"  # keyed like a document
    body: dict[str, Any] = {"request_id": rid, "query": "lighthouse"}
    if via == "reply_to":
        body["reply_to"] = target
    send(worker, json.dumps(body).encode(), headers=[(REPLY_TOPIC_HEADER, target.encode())] if via == "header" else [])
    reply = SearchReply.model_validate_json(reply_record(worker, rid.encode()).value)
    assert reply.status == "error" and reply.error is not None
    assert reply.error.code == "reply_topic_refused"
    assert repr(target) in reply.error.message and repr(worker.reply_topics_glob) in reply.error.message
    with pytest.raises(AssertionError, match="only 0 of 1"):
        read_topic(worker, target, where=lambda r: r.key == rid.encode(), timeout=3)


def test_a_timestamp_in_the_future_does_not_extend_the_deadline(worker: Settings) -> None:
    rid = uuid.uuid4().hex
    body = {"request_id": rid, "query": "glacier", "deadline_ms": 1500,
            "consistency": {"doc_id": "nowhere/never.md", "min_version": 10**9}}  # a fence never met
    sent_ms = int(time.time() * 1000)
    send(worker, json.dumps(body).encode(), timestamp_ms=sent_ms + 3_600_000)  # stamped an hour ahead
    record = reply_record(worker, rid.encode(), timeout=20)
    reply = SearchReply.model_validate_json(record.value)
    assert reply.status == "timeout" and reply.error is not None and "fence" in reply.error.message
    # the reply's own timestamp is the worker's clock when it answered (same machine as this test)
    assert record.timestamp - sent_ms < 1500 + 1500, f"answered {record.timestamp - sent_ms} ms after the send"


@pytest.mark.parametrize("valid_body", [True, False], ids=["valid-body", "invalid-body"])
def test_headers_that_are_not_utf8_get_an_error_reply_and_the_worker_reads_on(worker: Settings,
                                                                              valid_body: bool) -> None:
    tag = uuid.uuid4().hex
    correlation = tag.encode() + b"\xc3\x28"  # an invalid UTF-8 sequence
    value = json.dumps({"request_id": tag, "query": "glacier"}).encode() if valid_body else b"not json " + tag.encode()
    send(worker, value, headers=[(CORRELATION_HEADER, correlation), (REPLY_TOPIC_HEADER, b"\xff\xfe-replies")])
    assert_answers_a_good_request(worker)
    # keyed by the request id: the body's, else the correlation header read as text
    key = tag.encode() if valid_body else correlation.decode("utf-8", "replace").encode()
    record = reply_record(worker, key, timeout=10)
    reply = SearchReply.model_validate_json(record.value)
    assert dict(record.headers)[CORRELATION_HEADER] == correlation  # echoed byte for byte
    assert reply.status == "error" and reply.error is not None
    assert reply.error.code == ("reply_topic_refused" if valid_body else "invalid_json")


def test_a_request_id_no_reply_can_carry_is_dead_lettered_and_the_worker_reads_on(worker: Settings) -> None:
    body = b'{"request_id": "\\ud800%s", "query": "glacier"}' % uuid.uuid4().hex.encode()  # a lone surrogate
    send(worker, body)
    assert_answers_a_good_request(worker)
    [record] = read_topic(worker, worker.topic_dead_letter, where=lambda r: r.value == body, timeout=10)
    assert dict(record.headers)[REASON] == b"schema"
