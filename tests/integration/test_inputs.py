"""The inputs producers already emit, end to end: Debezium envelopes through the indexer worker's
bridge, and CloudEvents on the changes topic (real Kafka, real Weaviate, a real indexer).

The Debezium records are the connector docs' examples (tests/unit/fixtures/debezium/) with their
``ts_ms`` renumbered in publishing order (the examples' own times are not in order), read with
``FRESHET_DEBEZIUM_VERSION=ts_ms``; the CloudEvents ones are the Kafka binding's examples.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline
from schemas.deadletter import REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import read_topic, records_now, send_raw, stored
from workers.debezium_bridge import group_id
from workers.kafka_admin import ensure_topics
from workers.log_reader import LogReader

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "debezium"


@pytest.fixture
def indexer(endpoints: Endpoints, tmp_path: Path) -> Iterator[Settings]:
    """An indexer whose worker bridges a Debezium topic of the docs' ``customers`` table."""
    base = make_settings(endpoints, tmp_path)
    settings = Settings(**{**base.model_dump(), "debezium_topic": f"{base.consumer_group_prefix}.dbz",
                           "debezium_doc_id": "id", "debezium_content": "first_name", "debezium_title": "last_name",
                           "debezium_version": "ts_ms", "debezium_metadata": "email"})
    ensure_topics(settings.kafka_access, [settings.debezium_topic], partitions=2)  # Debezium's topic, not ours
    stack = Stack(settings)
    stack.up(["indexer"])
    yield settings
    stack.down(["indexer"])
    drop_pipeline(settings)  # the Debezium topic too: it has the pipeline's prefix


def _fixture(name: str, ts: int | None = None, **after: Any) -> tuple[bytes | None, bytes | None]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    key, value = data["key"], data["value"]
    if value is not None:
        payload = value["payload"] if "schema" in value else value
        payload["ts_ms"] = ts
        if after:
            payload["after"].update(after)
            key = {"id": after["id"]} if "id" in after else key
    return (None if key is None else json.dumps(key).encode()), (None if value is None else json.dumps(value).encode())


CE_EVENT = {"op": "upsert", "version": 1, "content": "# CloudEvents\n\nA change event carried in a CloudEvent."}
CE_BINARY = [("ce_specversion", b"1.0"), ("ce_type", b"com.example.someevent"),
             ("ce_source", b"/mycontext/subcontext"), ("ce_id", b"1234-1234-1234"),
             ("ce_time", b"2018-04-05T03:56:24Z"), ("content-type", b"application/json")]
CE_STRUCTURED = {"specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext/subcontext",
                 "id": "1234-1234-1234", "time": "2018-04-05T03:56:24Z", "datacontenttype": "application/json"}


def _texts(settings: Settings, doc_id: str) -> list[tuple[str, str, int]]:
    return sorted((p["title"], p["text"], p["version"]) for p in stored(settings, doc_id).values())


def test_debezium_and_cloudevents_records_are_indexed_and_bad_ones_dead_lettered(indexer: Settings) -> None:
    s, dbz = indexer, indexer.debezium_topic
    records = [  # (key, value) in publishing order; a bad record, then good ones after it
        _fixture("mysql-create", 1000),                      # c, schema wrapper: 1004 "Anne"
        _fixture("mysql-update-no-schema", 2000),            # u, no wrapper: 1004 "Anne Marie"
        (b'{"id": 5}', b"not json"),                         # bad: not JSON
        _fixture("postgresql-create", 3000),                 # c, schema wrapper: 1 "Anne"
        (b'{"id": 6}', json.dumps({"id": 6, "first_name": "flattened"}).encode()),  # bad: no op
        _fixture("mysql-read-snapshot", 4000, id=1001),      # r (snapshot read): 1001
        _fixture("postgresql-create-no-schema", 5000, id=2, first_name="Marie"),  # c, no wrapper: 2
        _missing_column(),                                   # bad: the content column is missing
        _fixture("postgresql-delete", 7000),                 # d: deletes 1
        _fixture("postgresql-tombstone"),                    # Debezium's tombstone: skipped
        _fixture("mysql-tombstone"),                         # skipped
        _fixture("mysql-create", 8000, id=1010, first_name="Last one"),  # a good one after all of it
    ]
    for key, value in records:
        send_raw(s, dbz, key, value)
    bad_ce = [h if h[0] != "ce_specversion" else ("ce_specversion", b"0.3") for h in CE_BINARY]
    send_raw(s, s.topic_changes, b"ce-bad", json.dumps({**CE_EVENT, "doc_id": "ce-bad"}).encode(), bad_ce)
    send_raw(s, s.topic_changes, b"ce-binary", json.dumps({**CE_EVENT, "doc_id": "ce-binary"}).encode(), CE_BINARY)
    send_raw(s, s.topic_changes, b"ce-structured",
             json.dumps({**CE_STRUCTURED, "data": {**CE_EVENT, "doc_id": "ce-structured"}}).encode(),
             [("content-type", b"application/cloudevents+json; charset=UTF-8")])

    expected = {
        "1004": [("Kretchmar", "Anne Marie", 2000)], "1001": [("Kretchmar", "Anne", 4000)],
        "2": [("Kretchmar", "Marie", 5000)], "1010": [("Kretchmar", "Last one", 8000)], "1": [],
        "ce-binary": [("CloudEvents", CE_EVENT["content"], 1)],
        "ce-structured": [("CloudEvents", CE_EVENT["content"], 1)], "ce-bad": [],
    }
    deadline = time.monotonic() + 120
    while True:
        got = {doc: _texts(s, doc) for doc in expected}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert got == expected

    read_topic(s, s.topic_dead_letter, count=4, timeout=30)  # they are all out, then the whole topic:
    dead = [dict(r.headers) for r in records_now(s, s.topic_dead_letter)]
    reasons = Counter((h[SOURCE_TOPIC].decode(), h[REASON].decode()) for h in dead)
    assert reasons == {(dbz, "debezium"): 3, (s.topic_changes, "cloudevents"): 1}  # each bad record once
    assert len({(h[SOURCE_TOPIC], h[SOURCE_PARTITION], h[SOURCE_OFFSET]) for h in dead}) == 4

    # The bridge commits only what it forwarded: by now every Debezium record is committed.
    ends, committed = asyncio.run(_offsets(s))
    assert sum(ends.values()) == len(records) and committed == {p: end for p, end in ends.items() if end > 0}


async def _offsets(s: Settings) -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, the bridge group's committed offsets) of the Debezium topic's partitions, once
    they agree or after 30 s."""
    reader = LogReader(s.kafka_access, s.debezium_topic)
    try:
        ends = {p: end for p, (_, end) in (await reader.bounds([0, 1])).items()}
        deadline = time.monotonic() + 30
        while (committed := await reader.committed(group_id(s), [0, 1])) != {p: e for p, e in ends.items() if e} \
                and time.monotonic() < deadline:
            await asyncio.sleep(1)
        return ends, committed
    finally:
        await reader.close()


def _missing_column() -> tuple[bytes | None, bytes | None]:
    key, value = _fixture("mysql-create", 6500, id=1007)
    envelope = json.loads(value or b"")
    del envelope["payload"]["after"]["first_name"]
    return key, json.dumps(envelope).encode()
