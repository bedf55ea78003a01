"""``POST /v1/search`` on a real query worker: the request of the Kafka topic, answered over HTTP
through the same validation, fences, tenants and deadlines."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.openapi import openapi_document
from schemas.search import CORRELATION_HEADER, SearchReply
from tests.integration.helpers import publish_and_wait, read_topic

pytestmark = pytest.mark.integration


def note(doc_id: str, tenant: str, topic: str) -> ChangeEvent:
    return ChangeEvent(doc_id=doc_id, op="upsert", version=1, tenant=tenant, title=f"The {topic}",
                       content=f"# The {topic}\n\nWhat a visitor to the {topic} of {tenant} should know: "
                               f"the {topic} changes with the seasons.")


@pytest.fixture(scope="module")
def indexed(pipeline: Settings) -> Settings:
    publish_and_wait(pipeline, [note("notes/lighthouse.md", "acme", "lighthouse"),
                                note("notes/lighthouse.md", "globex", "lighthouse"),
                                note("notes/orchard.md", "acme", "orchard")])
    return pipeline


@pytest.fixture(scope="module")
def http(indexed: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=indexed.worker_url("query"), timeout=60) as client:
        yield client


def post(http: httpx.Client, body: dict[str, Any] | bytes) -> tuple[int, SearchReply]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = http.post("/v1/search", content=content, headers={"content-type": "application/json"})
    assert resp.headers["content-type"].startswith("application/json")
    return resp.status_code, SearchReply.model_validate_json(resp.content)


def test_an_indexed_document_is_found_over_http(http: httpx.Client) -> None:
    rid = uuid.uuid4().hex
    # reply_to names a topic the worker would refuse over Kafka: over HTTP it is ignored
    status, reply = post(http, {"request_id": rid, "query": "orchard", "mode": "keyword", "top_k": 3,
                                "reply_to": "__consumer_offsets"})
    assert status == 200 and reply.status == "ok" and reply.request_id == rid
    assert reply.hits and reply.hits[0].doc_id == "notes/orchard.md" and reply.hits[0].tenant == "acme"
    assert reply.view and reply.timings.total_ms > 0


def test_a_tenant_filter_holds(http: httpx.Client) -> None:
    for tenant in ("acme", "globex"):
        status, reply = post(http, {"request_id": uuid.uuid4().hex, "query": "lighthouse visitor seasons",
                                    "tenant": tenant, "top_k": 20})
        assert status == 200 and reply.hits
        assert {h.tenant for h in reply.hits} == {tenant}
    _, everyone = post(http, {"request_id": uuid.uuid4().hex, "query": "lighthouse", "mode": "keyword", "top_k": 20})
    assert {h.tenant for h in everyone.hits} == {"acme", "globex"}


def over_kafka(settings: Settings, body: dict[str, Any]) -> SearchReply:
    rid = body["request_id"]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers.split(","), acks="all")
    try:
        producer.send(settings.topic_requests, key=rid.encode(), value=json.dumps(body).encode(),
                      headers=[(CORRELATION_HEADER, rid.encode())]).get(timeout=30)
    finally:
        producer.close()
    [record] = read_topic(settings, settings.topic_replies, where=lambda r: r.key == rid.encode(), timeout=60)
    return SearchReply.model_validate_json(record.value)


@pytest.mark.parametrize(("fields", "code"), [
    ({"top_k": 0}, "schema"),
    ({"mode": "fuzzy"}, "schema"),
    ({"filters": {"field": "colour", "value": "red"}}, "unknown_filter_field"),
    ({"filters": {"field": "doc_id", "op": "gte", "value": "a"}}, "invalid_filter"),
])
def test_a_bad_request_gets_400_with_the_error_it_gets_over_kafka(indexed: Settings, http: httpx.Client,
                                                                  fields: dict[str, Any], code: str) -> None:
    body = {"request_id": uuid.uuid4().hex, "query": "lighthouse", **fields}
    status, reply = post(http, body)
    assert status == 400 and reply.status == "error" and reply.request_id == body["request_id"]
    assert reply.error is not None and reply.error.code == code
    kafka = over_kafka(indexed, {**body, "reply_to": indexed.topic_replies})
    assert kafka.error == reply.error


def test_a_body_that_is_not_json_gets_400(http: httpx.Client) -> None:
    status, reply = post(http, b"{not json")
    assert status == 400 and reply.request_id == ""
    assert reply.error is not None and reply.error.code == "invalid_json"


def test_an_unmet_fence_gets_504_once_the_deadline_from_receipt_passed(http: httpx.Client) -> None:
    started = time.monotonic()
    status, reply = post(http, {"request_id": uuid.uuid4().hex, "query": "orchard", "deadline_ms": 1500,
                                "consistency": {"doc_id": "notes/orchard.md", "tenant": "acme", "min_version": 99}})
    took = time.monotonic() - started
    assert status == 504 and reply.status == "timeout"
    assert reply.error is not None and reply.error.code == "deadline_exceeded" and "fence" in reply.error.message
    assert 1.4 < took < 10


def test_a_met_fence_answers_at_once(http: httpx.Client) -> None:
    status, reply = post(http, {"request_id": uuid.uuid4().hex, "query": "orchard", "mode": "keyword",
                                "consistency": {"doc_id": "notes/orchard.md", "tenant": "acme", "min_version": 1}})
    assert status == 200 and reply.hits[0].doc_id == "notes/orchard.md"


def test_the_openapi_document_is_served(http: httpx.Client) -> None:
    resp = http.get("/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.json() == json.loads(json.dumps(openapi_document()))


def test_get_on_the_search_endpoint_is_refused(http: httpx.Client) -> None:
    assert http.get("/v1/search").status_code == 405
