"""The delivery guard's reader against the real broker: a read-back range comes in bounded pages."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer
from kafka.admin import NewTopic

from freshet.settings import Settings
from workers.kafka_admin import admin_client
from workers.log_reader import LogReader

pytestmark = pytest.mark.integration


def test_a_long_range_is_read_back_in_bounded_pages(isolated: Settings) -> None:
    topic = isolated.topic_changes
    admin = admin_client(isolated.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=isolated.bootstrap_servers.split(","), acks="all")
    try:
        for i in range(1200):
            producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
        producer.flush(30)
    finally:
        producer.close()

    async def pages() -> list[tuple[int, int, int]]:
        reader = LogReader(isolated.bootstrap_servers, topic)
        out: list[tuple[int, int, int]] = []
        try:
            start = 100
            while start < 5000:  # far past the end: the reader stops at the log's end
                records, nxt = await reader.read_page(0, start, 5000, 500)
                out.append((len(records), records[0].offset if records else -1, nxt))
                assert [r.offset for r in records] == list(range(start, start + len(records)))
                if nxt <= start:
                    break
                start = nxt
        finally:
            await reader.close()
        return out

    got = asyncio.run(pages())
    assert got[:3] == [(500, 100, 600), (500, 600, 1100), (100, 1100, 1200)], got
    assert all(n <= 500 for n, _, _ in got)
