"""Indexing: turning change events into chunk writes and deletes.

The pure part (:func:`chunk_id`, :func:`latest_per_document`, :func:`build_records`) decides what
to write; :class:`Indexer` runs it against an :class:`~workers.embedding.Embedder` and a
:class:`~workers.store.ChunkStore`.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from schemas.applied import AppliedRecord
from schemas.change import ChangeEvent
from workers.chunking import Chunk, chunk_document
from workers.embedding import Embedder, embed_off_loop
from workers.store import ChunkRecord, ChunkStore

log = structlog.get_logger(__name__)

#: Namespace of chunk ids. Never change it: every stored id derives from it.
CHUNK_NAMESPACE = uuid.UUID("6f1d7a2c-3b8e-5c4d-9a10-f7e2b3c4d5e6")


@dataclass(frozen=True, slots=True)
class SourcedEvent:
    """A decoded change event and where it was read from."""

    event: ChangeEvent
    partition: int
    offset: int
    timestamp: datetime | None


def chunk_id(tenant: str | None, doc_id: str, content_hash: str, occurrence: int) -> str:
    """Stable id of a chunk: the same text at the same occurrence in a document keeps its id."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant or ''}\x1f{doc_id}\x1f{content_hash}\x1f{occurrence}"))


def chunk_ids(tenant: str | None, doc_id: str, chunks: Sequence[Chunk]) -> list[str]:
    """Ids of a document's chunks; repeated identical chunks are told apart by occurrence."""
    seen: Counter[str] = Counter()
    ids = []
    for chunk in chunks:
        h = chunk.content_hash
        ids.append(chunk_id(tenant, doc_id, h, seen[h]))
        seen[h] += 1
    return ids


def latest_per_document(events: Sequence[SourcedEvent]) -> list[SourcedEvent]:
    """Keep only each document's last event of a micro-batch (by offset), in offset order."""
    last: dict[str, SourcedEvent] = {}
    for se in sorted(events, key=lambda s: (s.partition, s.offset)):
        last[se.event.key] = se
    return sorted(last.values(), key=lambda s: (s.partition, s.offset))


def title_of(event: ChangeEvent, chunks: Sequence[Chunk]) -> str | None:
    """The event's title, else the document's first heading."""
    if event.title:
        return event.title
    return next((c.heading_path[0] for c in chunks if c.heading_path), None)


def build_records(
    se: SourcedEvent, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]], now: datetime
) -> list[ChunkRecord]:
    """The stored form of a document version's chunks."""
    ev = se.event
    title = title_of(ev, chunks)
    ids = chunk_ids(ev.tenant, ev.doc_id, chunks)
    return [
        ChunkRecord(
            id=cid, doc_id=ev.doc_id, tenant=ev.tenant, title=title, heading_path=c.heading_path,
            position=c.position, text=c.text, version=ev.version, content_hash=c.content_hash,
            vector=vec, event_time=ev.event_time or se.timestamp, indexed_at=now,
        )
        for cid, c, vec in zip(ids, chunks, vectors, strict=True)
    ]


class Indexer:
    """Applies micro-batches of change events to the store."""

    def __init__(self, embedder: Embedder, store: ChunkStore) -> None:
        self._embedder = embedder
        self._store = store

    async def start(self) -> None:
        """Connect the store and load the model (off the loop) before the first batch."""
        await self._store.start()
        await embed_off_loop(self._embedder, ["warm-up"])

    def chunk(self, event: ChangeEvent) -> list[Chunk]:
        return chunk_document(
            event.content or "", content_type=event.content_type,
            max_tokens=self._embedder.max_tokens, count_tokens=self._embedder.count_tokens,
        )

    async def apply(self, events: Sequence[SourcedEvent]) -> list[AppliedRecord]:
        """Write the batch's effect; return one applied record per document, once acknowledged.

        A document's earlier events in the same batch are superseded by its last one, which is
        the version reported: waiters ask for "version >= mine".

        Raises :class:`~freshet.errors.TransientError` when the store is away: nothing is
        acknowledged then, and the caller retries the whole batch (writes are idempotent).
        """
        started = time.perf_counter()
        batch = latest_per_document(events)
        upserts = [(se, self.chunk(se.event)) for se in batch if se.event.op == "upsert"]
        texts = [c.embed_text for _, chunks in upserts for c in chunks]
        vectors = await embed_off_loop(self._embedder, texts)
        now = datetime.now(UTC)
        applied: dict[str, AppliedRecord] = {}
        pos = 0
        deleted = 0
        for se, chunks in upserts:
            records = build_records(se, chunks, vectors[pos : pos + len(chunks)], now)
            pos += len(chunks)
            await self._store.upsert(records)
            ids = [r.id for r in records]
            deleted += await self._store.delete_document(se.event.tenant, se.event.doc_id, keep=ids)
            applied[se.event.key] = _applied(se, ids, now)
        for se in batch:
            if se.event.op == "delete":
                deleted += await self._store.delete_document(se.event.tenant, se.event.doc_id)
                applied[se.event.key] = _applied(se, [], now)
        log.info(
            "batch_applied", events=len(events), documents=len(batch), chunks_embedded=len(texts),
            chars_embedded=sum(map(len, texts)), chunks_deleted=deleted,
            seconds=round(time.perf_counter() - started, 3),
        )
        # Superseded events of the batch are covered by their document's later version.
        return list(applied.values())


def _applied(se: SourcedEvent, ids: list[str], now: datetime) -> AppliedRecord:
    ev = se.event
    return AppliedRecord(
        doc_id=ev.doc_id, tenant=ev.tenant, version=ev.version, op=ev.op, chunk_ids=ids,
        source_partition=se.partition, source_offset=se.offset,
        event_time=ev.event_time or se.timestamp, applied_at=now,
    )
