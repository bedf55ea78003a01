"""The indexer agent: changes topic -> micro-batches -> Weaviate -> state table + applied topic.

Rules this wiring keeps (each has a test):

- **No record can stop the agent.** Any exception raised by one event (bad input, or a bug its
  content triggers) makes that event a dead letter (its reason, or ``processing_error`` with the
  exception type); a batch that fails is retried event by event so only the culprit is rejected.
  Should the agent die all the same, ``/healthz`` fails from then on.
- **Transient faults block, never drop.** Weaviate or Kafka away, a READONLY shard, memory
  pressure, any 5xx (:mod:`workers.weaviate_faults`): the batch waits with backoff and is retried
  whole (every write is idempotent). Only objects Weaviate rejects for their own content
  (``ObjectRejectedError``) dead-letter their events (reason ``store_rejected``).
- **A batch is done only when Kafka has its states** (:class:`streams.state.StateTable`), then its
  applied records; only then does the position move.
- **Old chunks go late.** A rewritten document's vanished chunks are deleted
  ``delete_grace_seconds`` after its applied record is out (a timer sweeps them), so a query worker
  whose applied view lags by up to that much still finds the document.

The delivery guard (:mod:`workers.delivery`) keeps the indexer's own position per partition and
reads back, in bounded pages that each go through the normal batch path, any record Faust skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from freshet.errors import FencedError, InvalidEventError, ObjectRejectedError
from freshet.settings import Settings
from schemas.applied import ProgressRecord, applied_key, progress_key
from schemas.change import document_key, parse_change
from streams.app import Topics
from streams.deadletter import dead_letter
from streams.sending import send_all
from streams.state import StateTable, Write
from streams.web import Health
from workers import metrics
from workers.delivery import advanced, missing_ranges, position_key, stalled_tail
from workers.fencing import Fence, state_ownership
from workers.indexing import Applied, Indexer
from workers.log_reader import LogReader, LogRecord
from workers.planning import DocState, Sourced
from workers.retry import until_done
from workers.stalls import watched
from workers.tenancy import check_event_tenant
from workers.topology import state_changelog

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 45.0
"""How long a revoked worker waits for its writes in flight; under Faust's rebalance timeout (60 s)."""


def ownership(app: faust.App, settings: Settings) -> tuple[frozenset[int], frozenset[int]]:
    """(owned, stateless) changes partitions of this worker now (:func:`workers.fencing.state_ownership`)."""
    return state_ownership(app.consumer.assignment(), app.assignor.assigned_actives(), source=settings.topic_changes,
                           changelog=state_changelog(settings.consumer_group_prefix))


@dataclass(eq=False)
class _ReadBack:
    """A record the delivery guard read from Kafka, standing in for the Faust event it never got."""

    message: LogRecord


def register(app: faust.App, topics: Topics, settings: Settings, indexer: Indexer, health: Health,
             fence: Fence) -> None:
    """Attach the indexer agent, its state table and the delivery guard's timers to ``app``.

    ``fence`` must also guard ``indexer``'s store (:class:`workers.fencing.FencedStore`): every unit
    of work here holds a lease on its partitions, and every write checks it."""
    # Keys (str) and values (DocState as a dict; positions, under POSITION_PREFIX keys, as int) go
    # through the table serializers, JSON by default. No key_type/value_type: Faust would expect
    # Record classes.
    states = StateTable(app.Table("doc-state", partitions=settings.topic_partitions, help="DocState per document"),
                        fence)
    reader = LogReader(settings.kafka_access, settings.topic_changes)
    lag_reader = LogReader(settings.kafka_access, settings.topic_changes)  # never waits on ``busy``
    busy = asyncio.Lock()  # a batch, a read-back and a sweep never run at once
    last_seen: dict[int, tuple[int, int]] = {}  # partition -> (position, end offset) at the last check
    bases: dict[int, int] = {}  # partition -> start when no position is stored yet
    lag_labels: set[str] = set()
    due: dict[str, float] = {}  # document key -> monotonic time its old chunks may be deleted
    scanned: set[int] = set()  # partitions whose stored states were scanned for pending deletes
    fenced: dict[int, int] = {}  # partition -> highest offset of a batch fenced here (acked, not handled)
    skipped: dict[str, int] = {}  # why the tail checks since the last one that ran were skipped (times)
    grace = settings.delete_grace_seconds
    page = settings.read_back_page_records
    generation = settings.generation or None  # tags and keys the applied and progress records

    def mine() -> list[int]:
        """The changes partitions this worker owns: assigned with their state (:func:`ownership`)."""
        return sorted(ownership(app, settings)[0])

    @app.agent(topics.changes, name="freshet.index_changes")
    async def index_changes(stream: Any) -> None:
        try:
            await until_done(indexer.start, what="indexer_start")
            health.ready = True
            async for events in stream.take_events(settings.index_batch_size, within=settings.index_linger_seconds):
                async with busy, watched("batch", events=len(events)):
                    try:
                        await _batch(list(events))
                    except FencedError as exc:  # the partitions are moving: their next owner redoes it
                        log.info("batch_fenced", events=len(events), reason=str(exc))
                        for ev in events:  # Faust acks them all the same: if they stay here, read them back
                            p = ev.message.partition
                            fenced[p] = max(fenced.get(p, -1), ev.message.offset)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in this wiring: no event is at fault; fail loudly
            health.fail(f"indexer agent died: {type(exc).__name__}: {exc}")
            log.critical("indexer_agent_died", error=f"{type(exc).__name__}: {exc}")
            raise

    async def _batch(events: list[Any]) -> None:
        """Records the consumer skipped before this batch first (read back in pages), then the batch."""
        by_partition: dict[int, list[int]] = {}
        for ev in events:
            by_partition.setdefault(ev.message.partition, []).append(ev.message.offset)
        with fence.lease(by_partition):
            for p, offsets in by_partition.items():
                for start, stop in missing_ranges(await _position(p), offsets):
                    await _read_back(p, start, stop)
            await _handle(events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def drain_writes(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """Before this worker rejoins the group (so before any new owner is assigned), wait for the
        writes that passed their lease check to end; every later check fails (a rebalance started)."""
        if not await fence.drain(timeout=DRAIN_SECONDS):
            log.error("fence_drain_timeout", writes_in_flight=fence.in_flight, seconds=DRAIN_SECONDS)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def check_state_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """A changes partition assigned without its state changelog partition is never written for
        (the fence's assignment is the owned partitions only): say so loudly and fail /healthz until
        a rebalance assigns both (restarting the worker makes one)."""
        owned, stateless = ownership(app, settings)
        if stateless:
            health.degraded = (f"changes partitions {sorted(stateless)} are assigned without their state changelog "
                               "partitions: nothing is written for them (restart the worker)")
            log.error("state_partitions_unassigned", partitions=sorted(stateless), owned=sorted(owned),
                      changelog=state_changelog(settings.consumer_group_prefix))
        else:
            health.degraded = ""

    @app.timer(interval=settings.delivery_check_seconds)  # type: ignore[untyped-decorator]
    async def check_tails() -> None:
        """Read back what the log holds beyond a partition's position when that position is stalled."""
        try:
            parts = mine() if health.ready and not app.rebalancing else []
        except Exception:  # noqa: BLE001 - logged; a timer that raised would never run again
            log.exception("tail_check_failed")
            return
        why = ("not ready" if not health.ready else "a rebalance is on" if app.rebalancing
               else "a batch is running" if busy.locked() else "no partitions owned" if not parts else "")
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            if sum(skipped.values()) % 6 == 3:  # a tail check quiet for three periods is worth a line
                log.info("tail_check_skipped", why=why, times=dict(skipped))
            return
        skipped.clear()
        async with busy, watched("tail_check", partitions=parts):
            try:
                with fence.lease(parts):
                    bounds = await until_done(reader.bounds, parts, what="read_offsets")
                    for p, (_, end) in bounds.items():
                        done = await _position(p)
                        if stalled_tail(done, end, last_seen.get(p)) or fenced.get(p, -1) >= done:
                            await _read_back(p, done, end)
                        fenced.pop(p, None)
                        last_seen[p] = (await _position(p), end)
            except FencedError as exc:
                log.info("read_back_fenced", reason=str(exc))
            except Exception:  # noqa: BLE001 - logged; the next period checks again
                log.exception("tail_check_failed")

    async def _read_back(partition: int, start: int, stop: int) -> None:
        """Handle ``[start, stop)`` of ``partition`` page by page, each page a batch of its own."""
        total, first = 0, start
        while start < stop:
            records, nxt = await until_done(reader.read_page, partition, start, stop, page, what="read_back")
            total += len(records)
            indexer.stats.read_back += len(records)
            metrics.READ_BACK.inc(len(records))
            await _handle([_ReadBack(r) for r in records], through={partition: nxt})
            if nxt <= start:
                break
            start = nxt
        log.warning("skipped_records_read_back", partition=partition, start=first, stop=stop, records=total)

    @app.timer(interval=max(0.5, min(5.0, grace / 4)))  # type: ignore[untyped-decorator]
    async def sweep_old_chunks() -> None:
        """Delete the old chunks of documents whose grace period has passed."""
        if not health.ready or app.rebalancing:
            return
        async with busy, watched("sweep"):
            try:
                parts = mine()
                with fence.lease(parts):
                    await _sweep(parts)
            except FencedError as exc:
                log.info("sweep_fenced", reason=str(exc))
            except Exception:  # noqa: BLE001 - logged; the states keep the work, the next period retries
                log.exception("old_chunks_sweep_failed")

    async def _sweep(parts: list[int]) -> None:
        now = time.monotonic()
        new = set(parts) - scanned  # states with deletes left by an earlier worker or a crash
        if new:
            for key, raw in states.items():
                if isinstance(raw, dict) and raw.get("partition") in new and (
                        raw.get("pending_delete") or raw.get("pending_sweep")):
                    due.setdefault(key, now + grace)
        scanned.intersection_update(parts)
        scanned.update(parts)
        await _finish([k for k, t in due.items() if t <= now], parts)

    async def _finish(keys: list[str], parts: Sequence[int]) -> None:
        """Delete the old chunks of these documents (as their states now say) and store the states
        without them; a key stays due until that is done."""
        work: list[tuple[str, DocState]] = []
        for key in keys:
            st = _state(key)
            if st is not None and st.partition in parts and (st.pending_delete or st.pending_sweep):
                work.append((key, st))
            else:
                due.pop(key, None)
        if work:
            cleared = await until_done(indexer.finish, work, what="delete_old_chunks")
            await states.put([(k, st.model_dump(mode="json"), st.partition) for k, st in cleared])
            for key, _ in work:
                due.pop(key, None)

    @app.timer(interval=settings.metrics_interval_seconds)  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        """Consumer lag per partition and the age of the oldest change not yet handled."""
        parts = mine()
        if not health.ready or not parts:
            return
        try:
            bounds = await lag_reader.bounds(parts)
            oldest = 0.0
            for p, (_, end) in bounds.items():
                done = await _position(p)
                metrics.CONSUMER_LAG.labels(str(p)).set(max(0, end - done))
                if end > done:
                    head, _ = await lag_reader.read_page(p, done, done + 1, 1, timeout=5)
                    if head and head[0].timestamp is not None:
                        oldest = max(oldest, time.time() - head[0].timestamp)
        except Exception as exc:  # noqa: BLE001 - a measurement never takes the worker down
            log.warning("lag_unmeasured", error=f"{type(exc).__name__}: {exc}")
            return
        for gone in lag_labels - {str(p) for p in parts}:
            metrics.CONSUMER_LAG.remove(gone)
        lag_labels.clear()
        lag_labels.update(str(p) for p in parts)
        metrics.OLDEST_UNAPPLIED_AGE.set(oldest)

    async def _handle(events: Sequence[Any], *, through: dict[int, int] | None = None) -> None:
        batch = [(se, ev) for ev in events if (se := await _decode(ev.message)) is not None]
        if batch:
            await _apply(batch)
        await _advance(events, through or {})

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

    async def _advance(events: Sequence[Any], through: dict[int, int]) -> None:
        """Move each partition's position past the handled events (or to ``through``, past a read-back
        page's holes), acknowledged by Kafka, and announce it on the applied topic."""
        offsets: dict[int, list[int]] = {p: [stop - 1] for p, stop in through.items()}
        for ev in events:
            offsets.setdefault(ev.message.partition, []).append(ev.message.offset)
        moved = {p: advanced(await _position(p), o) for p, o in offsets.items()}
        await states.put([(position_key(p), at, p) for p, at in moved.items()], what="position_write")
        await send_all(topics.applied, [
            {"key": progress_key(p, generation),
             "value": ProgressRecord(partition=p, through=at, generation=generation).model_dump_json().encode(),
             "partition": p % settings.topic_partitions} for p, at in moved.items()],
            what="progress_record", fence=fence)

    async def _decode(message: Any) -> Sourced | None:
        try:
            change = parse_change(message.value, message.key, max_bytes=settings.max_document_bytes,
                                  headers=message.headers)
            check_event_tenant(change, required=settings.multi_tenancy)  # with tenancy, no shard is no one's
            ts = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None
            return Sourced(change, message.partition, message.offset, ts, tombstone=message.value is None)
        except InvalidEventError as exc:
            await _reject(message, exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - this record's fault, whatever it is
            await _reject(message, "processing_error", f"{type(exc).__name__}: {exc}")
        return None

    async def _reject(message: Any, reason: str, error: str) -> None:
        """Dead-letter one record; never raises (a record that cannot even be dead-lettered is logged)."""
        indexer.stats.dead_lettered += 1
        metrics.DEAD_LETTERED.labels("indexer", reason).inc()
        log.warning("event_dead_lettered", reason=reason, error=error[:500], partition=message.partition,
                    offset=message.offset)
        try:
            await dead_letter(topics.dead_letter, message, reason=reason, error=error, worker="indexer",
                              max_bytes=settings.dead_letter_max_bytes)
        except Exception:  # noqa: BLE001 - the reason is in the log line above
            log.exception("dead_letter_failed", reason=reason, partition=message.partition, offset=message.offset)

    def _state(key: str) -> DocState | None:
        raw = states.get(key)
        return DocState.model_validate(raw) if raw else None

    async def _apply(batch: list[tuple[Sourced, Any]]) -> None:
        """Apply the batch; if that fails for good, apply event by event, dead-lettering failures."""
        try:
            current = {se.event.key: _state(se.event.key) for se, _ in batch}
            await _commit(await until_done(indexer.apply, [se for se, _ in batch], current, what="apply_batch"))
            return
        except FencedError:
            raise
        except Exception:  # noqa: BLE001 - isolate the event at fault, keep the partition moving
            log.exception("batch_failed_isolating", events=len(batch))
        for se, event in batch:
            try:
                await _commit(await until_done(indexer.apply, [se], {se.event.key: _state(se.event.key)},
                                               what="apply_event"))
            except FencedError:
                raise
            except ObjectRejectedError as exc:  # Weaviate validated this event's objects and refused them
                await _reject(event.message, "store_rejected", str(exc))
            except InvalidEventError as exc:  # found while planning (too_many_chunks): nothing was written
                await _reject(event.message, exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - recorded in the dead-letter topic, not lost
                log.exception("event_failed", doc_id=se.event.doc_id, version=se.event.version)
                await _reject(event.message, "processing_error", f"{type(exc).__name__}: {exc}")

    async def _commit(applied: list[Applied]) -> None:
        """Persist the new states (acknowledged), then announce them on the applied topic; the old
        chunks are deleted after the grace period (at once when it is 0)."""
        writes: list[Write] = [(a.key, a.state.model_dump(mode="json"), a.source.partition)
                               for a in applied if a.changed]
        await states.put(writes)
        await send_all(topics.applied, [
            {"key": applied_key(document_key(a.record.tenant, a.record.doc_id), generation),
             "value": a.record.model_dump_json().encode(), "partition": a.source.partition % settings.topic_partitions}
            for a in applied], what="applied_record", fence=fence)
        doomed = [a.key for a in applied if a.state.pending_delete or a.state.pending_sweep]
        at = time.monotonic() + grace
        for key in doomed:
            due[key] = at
        if grace == 0 and doomed:
            try:
                await _finish(doomed, [a.source.partition for a in applied])
            except FencedError:
                raise
            except Exception:  # noqa: BLE001 - the events are applied; the sweep retries the deletes
                log.exception("old_chunks_not_deleted", documents=len(doomed))
