"""Indexing: applying micro-batches of change events to the store, embedding only what changed.

:class:`Indexer` groups a batch by document, folds each document's events into the one to apply
(:func:`~workers.planning.winning_event`), plans the writes against the stored state
(:func:`~workers.planning.plan_change`), embeds the new chunks of the whole batch in one go (off
the event loop, through the embedding cache), and writes to the store. It returns the new states
and applied records; the caller persists the states only after this returns, i.e. after the store
acknowledged every write.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from freshet.errors import InvalidEventError
from schemas.applied import AppliedRecord
from schemas.change import ChangeEvent, split_key
from workers import metrics
from workers.chunking import NO_CONTEXT, Chunk, Context, chunk_document
from workers.embedding import Embedder, EmbeddingCache, Vector, embed_off_loop, off_loop
from workers.planning import DocState, Plan, Sourced, highest_version, plan_change, winning_event
from workers.stats import IndexerStats
from workers.store import ChunkRecord, ChunkStore, VectorSource

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Applied:
    """One document brought to a new state by a batch."""

    key: str
    source: Sourced
    """The event that decided the state (its partition and offset place the state)."""
    state: DocState
    record: AppliedRecord
    changed: bool = True
    """False when every event of the document was stale: the state stands, the record re-acknowledges it."""


def check_chunk_count(n: int, cap: int) -> None:
    """Refuse a document version of more than ``cap`` chunks: its state must fit one Kafka record."""
    if n > cap:
        raise InvalidEventError("too_many_chunks", f"the document chunks into {n} chunks, above the cap of {cap} "
                                "(FRESHET_MAX_CHUNKS_PER_DOCUMENT): its state would not fit one Kafka record")


def title_of(event: ChangeEvent, chunks: Sequence[Chunk]) -> str | None:
    """The event's title, else the document's first heading."""
    if event.title:
        return event.title
    return next((c.heading_path[0] for c in chunks if c.heading_path), None)


class Indexer:
    """Applies micro-batches of change events to a :class:`ChunkStore`."""

    def __init__(self, embedder: Embedder, store: ChunkStore, cache: EmbeddingCache, stats: IndexerStats,
                 *, min_chars: int = 100, max_chunks: int = 5_000, context: Context = NO_CONTEXT,
                 generation: str | None = None, reuse: VectorSource | None = None) -> None:
        """``generation``: the index generation written (tags the applied records); ``reuse``: where
        vectors of the same model are taken from before embedding (the previous generation)."""
        self._generation = generation
        self._reuse = reuse
        self._min_chars = min_chars
        self._context = context
        self._max_chunks = max_chunks
        self._embedder = embedder
        self._store = store
        self._cache = cache
        self.stats = stats

    async def start(self) -> None:
        """Connect the store and load the model (off the loop) before the first batch."""
        await self._store.start()
        if self._reuse is not None:
            await self._reuse.start()
        await embed_off_loop(self._embedder, ["warm-up"])

    def chunk(self, event: ChangeEvent) -> list[Chunk]:
        """The event's chunks; raises :class:`InvalidEventError` (``too_many_chunks``) over the cap."""
        chunks = chunk_document(
            event.content or "", content_type=event.content_type,
            max_tokens=self._embedder.max_tokens, count_tokens=self._embedder.count_tokens,
            min_chars=self._min_chars, title=event.title, context=self._context,
        )
        check_chunk_count(len(chunks), self._max_chunks)
        return chunks

    async def apply(self, batch: Sequence[Sourced], states: Mapping[str, DocState | None]) -> list[Applied]:
        """Apply ``batch`` given each document's stored state; return the documents that changed state.

        Raises :class:`~freshet.errors.TransientError` when the store is away: nothing is
        acknowledged then, and the caller retries the whole batch (every write is idempotent).
        Chunking runs in the model thread, like embedding: neither ever blocks the event loop.
        """
        started = time.perf_counter()
        plans, unchanged, stale = await off_loop(self._plan, batch, states)
        vectors = await self._vectors([c for *_, p in plans for _, c in p.embed])
        now = datetime.now(UTC)
        await self._write(plans, vectors, now)
        applied = [self._applied(key, se, p, now) for key, se, _, p in plans] + unchanged
        for a in applied[:len(plans)]:
            if a.record.event_time is not None:
                age = max(0.0, (now - a.record.event_time).total_seconds())
                metrics.FRESHNESS.observe(age)
                metrics.RECENT_FRESHNESS.add(age)
        self._count(batch, plans, stale)
        log.info("batch_applied", events=len(batch), documents=len(plans), stale=stale,
                 embedded=sum(len(p.embed) for *_, p in plans), kept=sum(p.kept for *_, p in plans),
                 updated=sum(len(p.update) for *_, p in plans), deleted=sum(len(p.delete) for *_, p in plans),
                 seconds=round(time.perf_counter() - started, 3))
        return applied

    def _plan(self, batch: Sequence[Sourced], states: Mapping[str, DocState | None]
              ) -> tuple[list[tuple[str, Sourced, list[Chunk], Plan]], list[Applied], int]:
        by_doc: dict[str, list[Sourced]] = defaultdict(list)
        for se in batch:
            by_doc[se.event.key].append(se)
        plans: list[tuple[str, Sourced, list[Chunk], Plan]] = []
        unchanged: list[Applied] = []
        stale = 0
        for key, events in by_doc.items():
            prev = states.get(key)
            winner, skipped = winning_event(prev, events)
            stale += skipped
            if winner is not None:
                chunks = self.chunk(winner.event) if winner.event.op == "upsert" else []
                plans.append((key, winner, chunks,
                              plan_change(prev, winner, chunks, floor=highest_version(prev, events),
                                          superseded=len(events) - skipped > 1)))
            elif prev is not None:  # all stale: acknowledge the state that stands, so waiters wake up
                unchanged.append(self._applied(key, events[-1], Plan("noop", prev), datetime.now(UTC), changed=False))
        return plans, unchanged, stale

    async def _vectors(self, chunks: Sequence[Chunk]) -> dict[str, Vector]:
        """Vectors by content hash: from the cache, else from the model in one batch."""
        model = self._embedder.model_id
        out: dict[str, Vector] = {}
        todo: dict[str, str] = {}
        for c in chunks:
            h = c.content_hash
            if h in out or h in todo:
                continue
            cached = self._cache.get(model, h)
            if cached is not None:
                out[h] = cached
                self.stats.chunks_reused += 1
                metrics.CHUNKS_REUSED.inc()
            else:
                todo[h] = c.embed_text
        if todo and self._reuse is not None:  # the previous generation's vectors, same model (freshet reindex)
            for h, vec in (await self._reuse.vectors_by_hash(list(todo))).items():
                if h in todo:
                    del todo[h]
                    out[h] = vec
                    self._cache.put(model, h, vec)
                    self.stats.chunks_reused += 1
                    metrics.CHUNKS_REUSED.inc()
        if todo:
            texts = list(todo.values())
            for h, vec in zip(todo, await embed_off_loop(self._embedder, texts), strict=True):
                out[h] = vec
                self._cache.put(model, h, vec)
            self.stats.chunks_embedded += len(texts)
            metrics.CHUNKS_EMBEDDED.inc(len(texts))
            self.stats.chars_embedded += sum(map(len, texts))
            self.stats.tokens_embedded += await off_loop(_tokens, self._embedder, texts)  # never on the event loop
        return out

    async def _write(self, plans: Sequence[tuple[str, Sourced, list[Chunk], Plan]], vectors: Mapping[str, Vector],
                     now: datetime) -> None:
        inserts: list[ChunkRecord] = []
        updates: list[ChunkRecord] = []
        for _, se, chunks, p in plans:
            title = title_of(se.event, chunks)
            inserts += [chunk_record(cid, c, se, title, vectors[c.content_hash], now) for cid, c in p.embed]
            updates += [chunk_record(cid, c, se, title, (), now) for cid, c in p.update]
        if inserts:
            with metrics.STORE_WRITE_SECONDS.labels("upsert").time():
                await self._store.upsert(inserts)
        if updates:
            with metrics.STORE_WRITE_SECONDS.labels("update").time():
                await self._store.update_properties(updates)
        self.stats.chunks_written += len(inserts)
        self.stats.chunks_updated += len(updates)

    async def finish(self, done: Sequence[tuple[str, DocState]]) -> list[tuple[str, DocState]]:
        """Delete what the documents' applied versions no longer hold (``(key, state)`` pairs, after
        their applied records are out and, by default, a grace period later, so a search never finds
        a document with neither version's chunks); return the states with their pending deletes
        cleared, to be stored."""
        cleared: list[tuple[str, DocState]] = []
        doomed: dict[str | None, list[str]] = defaultdict(list)  # by tenant: a multi-tenant store's shard
        for key, st in done:
            doomed[split_key(key)[0]] += st.pending_delete
        for tenant, ids in doomed.items():
            if ids:
                with metrics.STORE_WRITE_SECONDS.labels("delete").time():
                    await self._store.delete_ids(ids, tenant=tenant)
                self.stats.chunks_deleted += len(ids)
                metrics.CHUNKS_DELETED.inc(len(ids))
        for key, st in done:
            if st.pending_sweep:  # unknown prior state: sweep by filter so no orphan survives
                tenant, doc_id = split_key(key)
                with metrics.STORE_WRITE_SECONDS.labels("sweep").time():
                    swept = await self._store.delete_document(tenant, doc_id, keep=st.chunk_ids)
                self.stats.chunks_deleted += swept
                metrics.CHUNKS_DELETED.inc(swept)
            if st.pending_delete or st.pending_sweep:
                cleared.append((key, st.model_copy(update={"pending_delete": [], "pending_sweep": False})))
        return cleared

    def _applied(self, key: str, se: Sourced, p: Plan, now: datetime, *, changed: bool = True) -> Applied:
        ev = se.event
        record = AppliedRecord(
            doc_id=ev.doc_id, tenant=ev.tenant, version=p.state.version,
            op="delete" if p.state.deleted else "upsert", chunk_ids=p.state.chunk_ids,
            source_partition=se.partition, source_offset=se.offset, event_time=ev.event_time or se.timestamp,
            applied_at=now, generation=self._generation,
        )
        return Applied(key, se, p.state, record, changed)

    def _count(self, batch: Sequence[Sourced], plans: Sequence[tuple[str, Sourced, list[Chunk], Plan]],
               stale: int) -> None:
        self.stats.batches += 1
        self.stats.stale_skipped += stale
        self.stats.events_applied += len(batch) - stale
        self.stats.chunks_reused += (reused := sum(p.kept + len(p.update) for *_, p in plans))
        metrics.STALE_SKIPPED.inc(stale)
        metrics.EVENTS_APPLIED.inc(len(batch) - stale)
        metrics.CHUNKS_REUSED.inc(reused)


def _tokens(embedder: Embedder, texts: Sequence[str]) -> int:
    return sum(embedder.count_tokens(t) for t in texts)


def chunk_record(cid: str, c: Chunk, se: Sourced, title: str | None, vector: Sequence[float],
            now: datetime) -> ChunkRecord:
    ev = se.event
    return ChunkRecord(
        id=cid, doc_id=ev.doc_id, tenant=ev.tenant, title=title, heading_path=c.heading_path,
        position=c.position, text=c.text, version=ev.version, content_hash=c.content_hash,
        vector=vector, metadata=dict(ev.metadata), event_time=ev.event_time or se.timestamp, indexed_at=now,
    )
