"""The indexer agent: changes topic -> micro-batches -> Weaviate -> applied topic.

Per-event errors never escape the agent (Faust would ack the record and stop the agent): bad input
goes to the dead-letter topic with its reason; transient faults block and retry with backoff,
so the batch's offsets are acknowledged only after Weaviate acknowledged every write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from freshet.errors import InvalidEventError
from freshet.settings import Settings
from schemas.applied import AppliedRecord
from schemas.change import document_key, parse_change
from streams.app import Topics
from streams.deadletter import dead_letter
from streams.web import Health
from workers.indexing import Indexer, SourcedEvent
from workers.retry import until_done

log = structlog.get_logger(__name__)


def register(app: faust.App, topics: Topics, settings: Settings, indexer: Indexer, health: Health) -> None:
    """Attach the indexer agent to ``app``."""

    @app.agent(topics.changes, name="freshet.index_changes")
    async def index_changes(stream: Any) -> None:
        await until_done(indexer.start, what="indexer_start")
        health.ready = True
        async for events in stream.take_events(settings.index_batch_size, within=settings.index_linger_seconds):
            good = [(se, ev.message) for ev in events if (se := await _decode(ev.message)) is not None]
            if good:
                for record in await _apply(good):
                    await _publish_applied(record)

    async def _decode(message: Any) -> SourcedEvent | None:
        try:
            change = parse_change(message.value, message.key, max_bytes=settings.max_document_bytes)
        except InvalidEventError as exc:
            log.warning("event_dead_lettered", reason=exc.reason, error=str(exc),
                        partition=message.partition, offset=message.offset)
            await dead_letter(topics.dead_letter, message, reason=exc.reason, error=str(exc), worker="indexer")
            return None
        ts = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None
        return SourcedEvent(change, message.partition, message.offset, ts)

    async def _apply(batch: list[tuple[SourcedEvent, Any]]) -> list[AppliedRecord]:
        """Apply the batch; if that fails for good, apply event by event, dead-lettering failures."""
        try:
            return await until_done(indexer.apply, [se for se, _ in batch], what="apply_batch")
        except Exception:  # noqa: BLE001 - isolate the event at fault, keep the partition moving
            log.exception("batch_failed_isolating", events=len(batch))
        applied: list[AppliedRecord] = []
        for se, message in batch:
            try:
                applied += await until_done(indexer.apply, [se], what="apply_event")
            except Exception as exc:  # noqa: BLE001 - recorded in the dead-letter topic, not lost
                log.exception("event_failed", doc_id=se.event.doc_id, version=se.event.version)
                await dead_letter(topics.dead_letter, message, reason="processing_error",
                                  error=f"{type(exc).__name__}: {exc}", worker="indexer")
        return applied

    async def _publish_applied(record: AppliedRecord) -> None:
        fut = await topics.applied.send(
            key=document_key(record.tenant, record.doc_id).encode(), value=record.model_dump_json().encode()
        )
        await fut
