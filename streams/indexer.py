"""The indexer agent: changes topic -> micro-batches -> Weaviate -> state table + applied topic.

Per-event errors never escape the agent (Faust would ack the record and stop the agent): bad input
goes to the dead-letter topic with its reason; transient faults block and retry with backoff, so
a batch's offsets are acknowledged only after Weaviate acknowledged every write. Each document's
state is written to the Faust table only after that, in the context of the event that decided
it, so the changelog partition is the source partition and the state moves with its partition.

The delivery guard (:mod:`workers.delivery`) keeps the indexer's own position per partition and
reads back any record Faust skipped, so an acknowledged offset always means a handled event.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from faust.streams import _current_event

from freshet.errors import InvalidEventError
from freshet.settings import Settings
from schemas.applied import ProgressRecord, progress_key
from schemas.change import document_key, parse_change
from streams.app import Topics
from streams.deadletter import dead_letter
from streams.sending import send
from streams.web import Health
from workers import metrics
from workers.delivery import advanced, missing_ranges, position_key, stalled_tail
from workers.indexing import Applied, Indexer
from workers.log_reader import LogReader, LogRecord
from workers.planning import DocState, Sourced
from workers.retry import until_done

log = structlog.get_logger(__name__)


@contextmanager
def _as_current(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event (a batch has many; table writes need the right one)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


@dataclass(eq=False)
class _ReadBack:
    """A record the delivery guard read from Kafka, standing in for the Faust event it never got."""

    message: LogRecord


def register(app: faust.App, topics: Topics, settings: Settings, indexer: Indexer, health: Health) -> None:
    """Attach the indexer agent, its state table and the delivery guard's timers to ``app``."""
    # Keys (str) and values (DocState as a dict; positions, under POSITION_PREFIX keys, as int) go
    # through the table serializers, JSON by default. No key_type/value_type: Faust would expect
    # Record classes.
    states = app.Table("doc-state", partitions=settings.topic_partitions, help="DocState per document key")
    reader = LogReader(settings.bootstrap_servers, settings.topic_changes)
    lag_reader = LogReader(settings.bootstrap_servers, settings.topic_changes)  # never waits on ``busy``
    busy = asyncio.Lock()  # a batch and a read-back never run at once
    last_seen: dict[int, tuple[int, int]] = {}  # partition -> (position, end offset) at the last check
    bases: dict[int, int] = {}  # partition -> start when no position is stored yet
    lag_labels: set[str] = set()

    @app.agent(topics.changes, name="freshet.index_changes")
    async def index_changes(stream: Any) -> None:
        await until_done(indexer.start, what="indexer_start")
        health.ready = True
        async for events in stream.take_events(settings.index_batch_size, within=settings.index_linger_seconds):
            async with busy:
                events = list(events) + await _read_back_gaps(events)
                await _handle(events)

    @app.timer(interval=settings.delivery_check_seconds)  # type: ignore[untyped-decorator]
    async def check_tails() -> None:
        """Read back what the log holds beyond a partition's position when that position is stalled."""
        mine = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topic_changes)
        if not health.ready or app.rebalancing or busy.locked() or not mine:
            return
        async with busy:
            try:
                await _check_tails(mine)
            except Exception:  # noqa: BLE001 - logged; the next period checks again
                log.exception("tail_check_failed")

    async def _check_tails(mine: list[int]) -> None:
        bounds = await until_done(reader.bounds, mine, what="read_offsets")
        events: list[Any] = []
        for p, (_, end) in bounds.items():
            done = await _position(p)
            if stalled_tail(done, end, last_seen.get(p)):
                events += await _read_back(p, done, end)
            last_seen[p] = (done, end)
        if events:
            await _handle(events)

    @app.timer(interval=settings.metrics_interval_seconds)  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        """Consumer lag per partition and the age of the oldest change not yet handled."""
        mine = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topic_changes)
        if not health.ready or not mine:
            return
        try:
            bounds = await lag_reader.bounds(mine)
            oldest = 0.0
            for p, (_, end) in bounds.items():
                done = await _position(p)
                metrics.CONSUMER_LAG.labels(str(p)).set(max(0, end - done))
                if end > done:
                    head = await lag_reader.read(p, done, done + 1)
                    if head and head[0].timestamp is not None:
                        oldest = max(oldest, time.time() - head[0].timestamp)
        except Exception as exc:  # noqa: BLE001 - a measurement never takes the worker down
            log.warning("lag_unmeasured", error=f"{type(exc).__name__}: {exc}")
            return
        for gone in lag_labels - {str(p) for p in mine}:
            metrics.CONSUMER_LAG.remove(gone)
        lag_labels.clear()
        lag_labels.update(str(p) for p in mine)
        metrics.OLDEST_UNAPPLIED_AGE.set(oldest)

    async def _handle(events: list[Any]) -> None:
        batch = [(se, ev) for ev in events if (se := await _decode(ev.message)) is not None]
        if batch:
            await _apply(batch)
        await _advance(events)

    async def _position(partition: int) -> int:
        """The offset after the last handled record of ``partition`` (its start if none is stored)."""
        raw = states.get(position_key(partition))
        return int(raw) if raw is not None else await _base(partition)

    async def _base(partition: int) -> int:
        """Where a partition without a stored position starts: the group's committed offset (an
        indexer from before positions existed), else the log start (a new one)."""
        if partition not in bases:
            committed = await until_done(reader.committed, app.conf.id, [partition], what="read_committed")
            first = (await until_done(reader.bounds, [partition], what="read_offsets"))[partition][0]
            bases[partition] = committed.get(partition, first)
        return bases[partition]

    async def _read_back_gaps(events: Iterable[Any]) -> list[Any]:
        by_partition: dict[int, list[int]] = {}
        for ev in events:
            by_partition.setdefault(ev.message.partition, []).append(ev.message.offset)
        out: list[Any] = []
        for p, offsets in by_partition.items():
            for start, stop in missing_ranges(await _position(p), offsets):
                out += await _read_back(p, start, stop)
        return out

    async def _read_back(partition: int, start: int, stop: int) -> list[_ReadBack]:
        records = await until_done(reader.read, partition, start, stop, what="read_back")
        log.warning("skipped_records_read_back", partition=partition, start=start, stop=stop, records=len(records))
        indexer.stats.read_back += len(records)
        metrics.READ_BACK.inc(len(records))
        return [_ReadBack(r) for r in records]

    async def _advance(events: list[Any]) -> None:
        """Move each partition's position past the handled events (stored under one of them, for
        its changelog partition) and announce it on the applied topic, after the batch's records."""
        last: dict[int, Any] = {}
        for ev in events:
            p = ev.message.partition
            if p not in last or ev.message.offset > last[p].message.offset:
                last[p] = ev
        for p, ev in last.items():
            through = advanced(await _position(p), [ev.message.offset])
            with _as_current(ev):
                states[position_key(p)] = through
            record = ProgressRecord(partition=p, through=through)
            await send(topics.applied, what="progress_record", key=progress_key(p),
                       value=record.model_dump_json().encode(), partition=p % settings.topic_partitions)

    async def _decode(message: Any) -> Sourced | None:
        try:
            change = parse_change(message.value, message.key, max_bytes=settings.max_document_bytes)
        except InvalidEventError as exc:
            indexer.stats.dead_lettered += 1
            metrics.DEAD_LETTERED.labels("indexer", exc.reason).inc()
            log.warning("event_dead_lettered", reason=exc.reason, error=str(exc),
                        partition=message.partition, offset=message.offset)
            await dead_letter(topics.dead_letter, message, reason=exc.reason, error=str(exc), worker="indexer")
            return None
        ts = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None
        return Sourced(change, message.partition, message.offset, ts, tombstone=message.value is None)

    def _state(key: str) -> DocState | None:
        raw = states.get(key)
        return DocState.model_validate(raw) if raw else None

    async def _apply(batch: list[tuple[Sourced, Any]]) -> None:
        """Apply the batch; if that fails for good, apply event by event, dead-lettering failures."""
        try:
            current = {se.event.key: _state(se.event.key) for se, _ in batch}
            await _commit(await until_done(indexer.apply, [se for se, _ in batch], current, what="apply_batch"),
                          batch)
            return
        except Exception:  # noqa: BLE001 - isolate the event at fault, keep the partition moving
            log.exception("batch_failed_isolating", events=len(batch))
        for se, event in batch:
            try:
                one = [(se, event)]
                await _commit(await until_done(indexer.apply, [se], {se.event.key: _state(se.event.key)},
                                               what="apply_event"), one)
            except Exception as exc:  # noqa: BLE001 - recorded in the dead-letter topic, not lost
                log.exception("event_failed", doc_id=se.event.doc_id, version=se.event.version)
                indexer.stats.dead_lettered += 1
                metrics.DEAD_LETTERED.labels("indexer", "processing_error").inc()
                await dead_letter(topics.dead_letter, event.message, reason="processing_error",
                                  error=f"{type(exc).__name__}: {exc}", worker="indexer")

    async def _commit(applied: list[Applied], batch: list[tuple[Sourced, Any]]) -> None:
        """Persist each new state (under its deciding event) and announce it on the applied topic."""
        events = {(se.partition, se.offset): ev for se, ev in batch}
        for a in applied:
            if a.changed:
                with _as_current(events[(a.source.partition, a.source.offset)]):
                    states[a.key] = a.state.model_dump(mode="json")
            await send(topics.applied, what="applied_record",
                       key=document_key(a.record.tenant, a.record.doc_id).encode(),
                       value=a.record.model_dump_json().encode(),
                       partition=a.source.partition % settings.topic_partitions)
        # Only now that the query workers can know the new chunk sets, delete the old chunks. If that
        # fails for good, the pending deletes stay in the states (a later change or replay of the
        # document retries them, `freshet verify` shows them); the events are applied, not lost.
        try:
            cleared = await until_done(indexer.finish, applied, what="delete_old_chunks")
        except Exception:  # noqa: BLE001 - logged; see above
            log.exception("old_chunks_not_deleted", documents=len(applied))
            return
        for a in cleared:
            with _as_current(events[(a.source.partition, a.source.offset)]):
                states[a.key] = a.state.model_dump(mode="json")
