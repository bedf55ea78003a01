"""Small helpers of the integration tests (real Kafka clients, no fakes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer
from weaviate.classes.query import Filter

from freshet.client import read_to_end
from freshet.publishing import publish_events
from freshet.settings import Settings
from schemas.change import ChangeEvent
from workers.weaviate_store import sync_client


def publish_and_wait(settings: Settings, events: list[ChangeEvent], timeout: float = 120.0) -> None:
    """Publish ``events`` and block until the indexer has applied all of them."""
    publish_events(settings, events, wait=True, timeout=timeout)


def send_raw(settings: Settings, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = KafkaProducer(**settings.kafka_access.kafka_python(), acks="all")
    try:
        producer.send(topic, key=key, value=value, headers=headers or []).get(timeout=30)
    finally:
        producer.close()


def read_topic(settings: Settings, topic: str, *, count: int = 1, where: Callable[[Any], bool] = lambda r: True,
               timeout: float = 60.0) -> list[Any]:
    """Read ``topic`` from the beginning until ``count`` records match ``where`` (fail after ``timeout``)."""
    consumer = KafkaConsumer(topic, **settings.kafka_access.kafka_python(),
                             auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(r for r in batch if where(r))
    finally:
        consumer.close()
    assert len(records) >= count, f"only {len(records)} of {count} records on {topic} after {timeout}s"
    return records


def records_now(settings: Settings, topic: str, *, where: Callable[[Any], bool] = lambda r: True) -> list[Any]:
    """Every record of ``topic`` up to its current end that matches ``where``. Unlike :func:`read_topic`
    it fails when the topic cannot be read (missing, broker away), so an empty answer means absent."""
    return [r for r in read_to_end(settings.bootstrap_servers, topic, missing_ok=False) if where(r)]


def stored(settings: Settings, doc_id: str) -> dict[str, dict[str, Any]]:
    """The Weaviate objects of one document: id -> properties."""
    client = sync_client(settings.weaviate_host, settings.weaviate_http_port, settings.weaviate_grpc_port)
    try:
        coll = client.collections.use(settings.collection)
        res = coll.query.fetch_objects(filters=Filter.by_property("doc_id").equal(doc_id), limit=1000)
        return {str(o.uuid): dict(o.properties) for o in res.objects}
    finally:
        client.close()


def wait_healthy(url: str, log: Path, timeout: float = 240.0) -> None:
    """Until the worker at ``url`` (its /healthz) answers 200; fail naming its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not ready after {timeout:.0f} s; log: {log}")
