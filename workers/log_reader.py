"""Reading topics directly, with no consumer group: ranges of a partition (the indexer's delivery
guard) and whole topics followed from the beginning (the query worker's applied view)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from freshet.errors import TransientError
from freshet.kafka_access import KafkaAccess, access

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LogRecord:
    """One record read back, shaped like the Faust message the indexer otherwise gets."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None
    """Seconds since the epoch (Faust's unit), from the record's millisecond timestamp."""
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class LogReader:
    """Reads ``[start, stop)`` of a partition of one topic. Connects in :meth:`start`."""

    def __init__(self, bootstrap: KafkaAccess | str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**access(self._bootstrap).aiokafka(), group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest")
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                raise TransientError(f"Kafka at {self._bootstrap} is not reachable: {exc}") from exc
            self._consumer = consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def bounds(self, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(first, end) offsets of each partition: its log start and the offset after its last record."""
        consumer = await self._started()
        tps = [TopicPartition(self._topic, p) for p in partitions]
        try:
            first = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
        except (KafkaError, OSError) as exc:
            raise TransientError(f"cannot read the offsets of {self._topic!r}: {exc}") from exc
        return {tp.partition: (first[tp], end[tp]) for tp in tps}

    async def committed(self, group: str, partitions: Sequence[int]) -> dict[int, int]:
        """The consumer group's committed offsets of these partitions (those it has)."""
        from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

        admin = AIOKafkaAdminClient(**access(self._bootstrap).aiokafka())
        try:
            await admin.start()
            got = await admin.list_consumer_group_offsets(
                group, partitions=[TopicPartition(self._topic, p) for p in partitions])
        except (KafkaError, OSError) as exc:
            raise TransientError(f"cannot read the committed offsets of group {group!r}: {exc}") from exc
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in got.items() if meta is not None and meta.offset >= 0}

    async def read_page(self, partition: int, start: int, stop: int, max_records: int,
                        *, timeout: float = 30.0) -> tuple[list[LogRecord], int]:
        """At most ``max_records`` records of ``[start, stop)`` and the offset to read on from.

        The next offset passes over holes (compaction, transaction markers), so a caller that
        handles the page and moves its position there never reads a range twice. Raises
        :class:`TransientError` when the broker is away or the page makes no progress within
        ``timeout`` seconds; the caller retries that page, having kept every earlier one.
        """
        consumer = await self._started()
        tp = TopicPartition(self._topic, partition)
        out: list[LogRecord] = []
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            stop = min(stop, end)
            if start >= stop:
                return [], max(start, stop)
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + timeout
            position = start
            while position < stop and len(out) < max_records:
                if time.monotonic() > deadline:
                    raise TransientError(f"reading {self._topic}[{partition}] from {position} (up to {stop}) made "
                                         f"no progress in {timeout:.0f} s")
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=max_records - len(out))
                for r in batch.get(tp, []):
                    if start <= r.offset < stop and len(out) < max_records:
                        out.append(LogRecord(self._topic, partition, r.offset, r.key, r.value,
                                             r.timestamp / 1000 if r.timestamp is not None else None,
                                             list(r.headers or [])))
                position = out[-1].offset + 1 if len(out) >= max_records else await consumer.position(tp)
                if batch.get(tp):
                    deadline = time.monotonic() + timeout
        except (KafkaError, OSError) as exc:
            raise TransientError(f"cannot read {self._topic}[{partition}] {start}..{stop}: {exc}") from exc
        finally:
            consumer.unsubscribe()
        return out, min(max(position, start), stop)

    async def _started(self) -> AIOKafkaConsumer:
        await self.start()
        assert self._consumer is not None
        return self._consumer


async def follow_topic(bootstrap: KafkaAccess | str, topic: str, on_records: Callable[[list[LogRecord]], None],
                       caught_up: asyncio.Event, *, since: float | None = None) -> None:
    """Read every partition of ``topic`` from the beginning (or from the records of time ``since``,
    in epoch seconds), forever (no consumer group), handing each fetched run of records to
    ``on_records``; set ``caught_up`` once the end offsets seen at start are reached."""
    consumer = AIOKafkaConsumer(topic, **access(bootstrap).aiokafka(), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka at {bootstrap} is not reachable: {exc}") from exc
    try:
        targets: dict[Any, int] = {}
        while not caught_up.is_set() and not targets:
            await asyncio.sleep(0.1)
            parts = consumer.assignment()
            if parts:
                targets = dict(await consumer.end_offsets(list(parts)))
                if since is not None:
                    starts = await consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
                    for tp in parts:
                        found = starts.get(tp)
                        consumer.seek(tp, found.offset if found is not None else targets[tp])
        while True:
            fetched = await consumer.getmany(timeout_ms=500)
            for tp, records in fetched.items():
                on_records([LogRecord(tp.topic, tp.partition, r.offset, r.key, r.value,
                                      r.timestamp / 1000 if r.timestamp is not None else None, list(r.headers or []))
                            for r in records])
            if not caught_up.is_set() and all([await consumer.position(tp) >= end for tp, end in targets.items()]):
                log.info("topic_caught_up", topic=topic, partitions=len(targets), records=sum(targets.values()))
                caught_up.set()
    finally:
        await consumer.stop()
