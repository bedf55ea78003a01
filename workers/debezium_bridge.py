"""The Debezium bridge: a topic of Debezium envelopes -> change events on the changes topic.

Each fetched batch is translated (:func:`schemas.debezium.translate`, via :func:`plan`), its
records produced (change events keyed by the document key, so per-document order and every rule
of the indexer hold as for any producer's events; bad envelopes to the dead-letter topic with
reason ``debezium`` and the usual headers), and only once Kafka has acknowledged all of them is
the batch's offset committed. Nothing is acknowledged that was not forwarded: that is why this is
a plain aiokafka consumer with ``enable_auto_commit=False`` and not a Faust agent (Faust may
commit records its stream never yielded).

Delivery is at least once: a crash or a rebalance between producing and committing forwards a
range again, which changes nothing (the translated events are versioned: their second copies are
stale). Kafka faults are waited out with backoff (:func:`workers.retry.until_done`); a record
Kafka refuses for good (too large) is dead-lettered instead, so no record can stop the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka import errors as kafka_errors

from freshet.errors import InvalidEventError, TransientError
from freshet.settings import Settings
from schemas.deadletter import TRUNCATED, dead_letter_headers, fit_dead_letter
from schemas.debezium import REASON, Forward, Mapping, translate
from workers import metrics
from workers.retry import until_done

log = structlog.get_logger(__name__)

WORKER = "debezium-bridge"
SOURCE_HEADER = "freshet.debezium.source"
"""On each forwarded record: ``topic:partition:offset`` of the Debezium record it came from."""
_REFUSALS = tuple(getattr(kafka_errors, n) for n in ("MessageSizeTooLargeError", "RecordTooLargeError")
                  if hasattr(kafka_errors, n))
_LOST_COMMIT = tuple(getattr(kafka_errors, n) for n in ("CommitFailedError", "IllegalStateError")
                     if hasattr(kafka_errors, n))


@dataclass(frozen=True, slots=True)
class Record:
    """One Debezium record as the consumer fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to produce: a forwarded change (``reason`` empty) or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    source: Record
    """The Debezium record it comes from."""
    reason: str = ""
    error: str = ""


def group_id(settings: Settings) -> str:
    """The bridge's consumer group: several indexer workers share the Debezium topic's partitions. Under
    the indexer's Kafka ACL prefix (``<prefix>-indexer``), and named from the configured prefix, not an
    adopted generation's (:func:`streams.worker.run`), so a reindex never starts it over."""
    return f"{settings.consumer_group_prefix}-indexer-debezium-bridge"


def plan(records: Sequence[Record], mapping: Mapping, *, changes: str, dead_letters: str,
         max_bytes: int) -> tuple[list[Outgoing], Counter[str]]:
    """What to produce for ``records`` (in their order) and a count of the outcomes."""
    out: list[Outgoing] = []
    counts: Counter[str] = Counter()
    for r in records:
        origin = f"{r.topic}:{r.partition}:{r.offset}"
        try:
            result = translate(r.value, r.key, mapping, event_id=origin)
        except InvalidEventError as exc:
            out.append(dead_letter(r, exc.reason, str(exc), dead_letters, max_bytes))
            counts["dead_lettered"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - this record's fault, whatever it is: never the bridge's death
            out.append(dead_letter(r, REASON, f"{type(exc).__name__}: {exc}", dead_letters, max_bytes))
            counts["dead_lettered"] += 1
            continue
        if isinstance(result, Forward):
            out.append(Outgoing(changes, result.key.encode(), result.value, [(SOURCE_HEADER, origin.encode())], r))
            counts["deleted" if result.event is None or result.event.op == "delete" else "upserted"] += 1
        else:
            counts[f"skipped_{result.why}"] += 1
    return out, counts


def dead_letter(r: Record, reason: str, error: str, topic: str, max_bytes: int) -> Outgoing:
    """``r`` as a dead letter: its bytes and headers, plus freshet's (schemas.deadletter)."""
    headers = dead_letter_headers(list(r.headers), reason=reason, error=error, topic=r.topic,
                                  partition=r.partition, offset=r.offset, worker=WORKER)
    key, value, headers = fit_dead_letter(r.key, r.value, headers, max_bytes)
    return Outgoing(topic, key, value, headers, r, reason, error)


def refused(o: Outgoing, exc: BaseException, topic: str, max_bytes: int) -> Outgoing:
    """What to send instead of a record Kafka refuses for good: a forward becomes the dead letter of
    its source record; a dead letter keeps only freshet's headers."""
    why = f"Kafka refuses the record for {o.topic!r}: {type(exc).__name__}: {exc}"
    if not o.reason:
        return dead_letter(o.source, REASON, why, topic, max_bytes)
    bare = [(n, b) for n, b in o.headers if n.startswith("freshet.") and n != TRUNCATED]
    return Outgoing(o.topic, None, None, [*bare, (TRUNCATED, f"{why}; key and value dropped".encode())],
                    o.source, o.reason, o.error)


class DebeziumBridge:
    """Consumes ``settings.debezium_topic`` in group :func:`group_id`; connects in :meth:`run`."""

    def __init__(self, settings: Settings, *, fetch_records: int = 500) -> None:
        self._s = settings
        self._mapping = settings.debezium_mapping
        self._fetch_records = fetch_records
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def run(self) -> None:
        """Bridge until cancelled; transient faults are waited out, never skipped."""
        try:
            await until_done(self._start, what="debezium_bridge_start")
            log.info("debezium_bridge_started", topic=self._s.debezium_topic, group=group_id(self._s),
                     changes=self._s.topic_changes)
            while True:
                batch = await until_done(self._fetch, what="debezium_fetch")
                if batch:
                    await self._bridge(batch)
        finally:
            await self._close()

    async def _bridge(self, batch: list[Record]) -> None:
        out, counts = plan(batch, self._mapping, changes=self._s.topic_changes,
                           dead_letters=self._s.topic_dead_letter, max_bytes=self._s.dead_letter_max_bytes)
        await until_done(self._produce, out, what="debezium_forward")
        dead = [o for o in out if o.reason]
        if dead:
            metrics.DEAD_LETTERED.labels(WORKER, REASON).inc(len(dead))
        await until_done(self._commit, batch, what="debezium_commit")
        (log.warning if dead else log.info)("debezium_batch_bridged", records=len(batch), **dict(counts),
                                            errors=[o.error[:300] for o in dead[:3]])

    async def _start(self) -> None:
        access = self._s.kafka_access.aiokafka()
        try:
            if self._producer is None:
                producer = AIOKafkaProducer(**access, acks="all", enable_idempotence=True,
                                            request_timeout_ms=int(self._s.kafka_request_timeout_seconds * 1000))
                await producer.start()
                self._producer = producer
            if self._consumer is None:
                consumer = AIOKafkaConsumer(self._s.debezium_topic, **access, group_id=group_id(self._s),
                                            enable_auto_commit=False, auto_offset_reset="earliest",
                                            session_timeout_ms=int(self._s.kafka_session_timeout_seconds * 1000))
                await consumer.start()
                self._consumer = consumer
        except (kafka_errors.KafkaError, OSError) as exc:
            raise TransientError(f"Kafka at {self._s.kafka_access} is not reachable: {exc}") from exc

    async def _fetch(self) -> list[Record]:
        assert self._consumer is not None
        try:
            fetched = await self._consumer.getmany(timeout_ms=1000, max_records=self._fetch_records)
        except (kafka_errors.KafkaError, OSError) as exc:
            raise TransientError(f"cannot read {self._s.debezium_topic!r}: {exc}") from exc
        return [Record(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for tp, records in fetched.items() for r in records]

    async def _produce(self, out: list[Outgoing]) -> None:
        """Send every record of ``out`` and wait until Kafka has all of them; on a transient fault the
        whole list goes again (a record's second copy changes nothing), keeping each key's order."""
        if self._producer is None:  # a renewal that could not start it
            await self._start()
        assert self._producer is not None
        producer = self._producer
        bound = 2 * self._s.kafka_request_timeout_seconds + 10
        futures: list[Any] = []
        try:
            async with asyncio.timeout(bound):
                for o in out:
                    futures.append(await producer.send(o.topic, o.value, key=o.key, headers=o.headers))
                results = await asyncio.gather(*futures, return_exceptions=True)
        except _REFUSALS as exc:  # refused before sending (larger than the producer's max request size)
            await asyncio.gather(*futures, return_exceptions=True)
            i = len(futures)
            out[i] = refused(out[i], exc, self._s.topic_dead_letter, self._s.dead_letter_max_bytes)
            raise TransientError(f"Kafka refuses a bridged record ({exc}); sending the batch again") from exc
        except TimeoutError as exc:
            await self._renew_producer()
            raise TransientError(f"Kafka acknowledged no bridged batch within {bound:.0f} s") from exc
        except (kafka_errors.KafkaError, OSError) as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            raise TransientError(f"cannot produce the bridged records: {type(exc).__name__}: {exc}") from exc
        failed = [(i, e) for i, e in enumerate(results) if isinstance(e, BaseException)]
        if any(isinstance(e, _REFUSALS) for _, e in failed):  # replaced, then everything once more
            for i, e in failed:
                if isinstance(e, _REFUSALS):
                    out[i] = refused(out[i], e, self._s.topic_dead_letter, self._s.dead_letter_max_bytes)
            await self._renew_producer()  # an idempotent producer's sequence has a gap after a refusal
            raise TransientError(f"{len(failed)} bridged record(s) refused or failed; sending the batch again")
        if failed:
            raise TransientError(f"{len(failed)} bridged record(s) not acknowledged: {failed[0][1]!r}")

    async def _commit(self, batch: list[Record]) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except _LOST_COMMIT as exc:  # a rebalance took the partitions: their next owner forwards them again
            log.info("debezium_commit_lost", error=f"{type(exc).__name__}: {exc}", partitions=len(offsets))
        except (kafka_errors.KafkaError, OSError) as exc:
            raise TransientError(f"cannot commit the bridged offsets: {exc}") from exc

    async def _renew_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 10)
        await self._start()

    async def _close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)
        self._consumer = self._producer = None

