"""``freshet verify``: the index against a fresh chunking of the latest versions on the changes topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from tqdm import tqdm
from weaviate.classes.query import Filter

from freshet.client import read_to_end
from freshet.errors import InvalidEventError, StoreError
from freshet.settings import Settings
from schemas.change import document_key, parse_change
from workers.chunking import Chunk, chunk_document
from workers.delivery import POSITION_PREFIX
from workers.embedding import EmbeddingCache, SentenceTransformerEmbedder, Vector
from workers.fencing import GENERATION_HEADER, WRITER_HEADER, fence_violations, header
from workers.indexing import chunk_record
from workers.planning import DocState, Sourced
from workers.store import ChunkRecord
from workers.tenancy import check_event_tenant, weaviate_tenant
from workers.topology import state_changelog
from workers.verification import (
    Expected,
    Removal,
    StoredObject,
    applicable_versions,
    compare,
    expected_documents,
    moved,
    plan_repair,
)
from workers.weaviate_store import VECTOR_NAME, client_for, store_for

log = structlog.get_logger(__name__)


def state_topic(settings: Settings) -> str:
    """The changelog topic of the indexer's state table."""
    return state_changelog(settings.consumer_group_prefix)


def read_changes(settings: Settings) -> list[Sourced]:
    out = []
    for r in tqdm(read_to_end(settings.kafka_access, settings.topic_changes), desc="changes", unit="event"):
        try:
            ev = parse_change(r.value, r.key, max_bytes=settings.max_document_bytes, headers=r.headers)
            check_event_tenant(ev, required=settings.multi_tenancy)
        except InvalidEventError:
            continue  # dead-lettered by the indexer: not part of the index
        ts = datetime.fromtimestamp(r.timestamp / 1000, UTC) if r.timestamp else None
        out.append(Sourced(ev, r.partition, r.offset, ts, tombstone=r.value is None))
    return out


def read_states(settings: Settings, written: list[tuple[int, int, str | None, str | None]] | None = None
                ) -> dict[str, DocState]:
    """The indexer's states from its changelog; ``written`` collects each record's place and fence
    headers (partition, offset, generation, writer) for :func:`~workers.fencing.fence_violations`."""
    states: dict[str, DocState] = {}
    for r in read_to_end(settings.kafka_access, state_topic(settings)):
        if written is not None:
            written.append((r.partition, r.offset, header(r.headers, GENERATION_HEADER),
                            header(r.headers, WRITER_HEADER)))
        if (entry := state_record(r)) is None:
            continue
        key, state = entry
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state
    return states


def state_record(r: Any) -> tuple[str, DocState | None] | None:
    """A changelog record as (document key, state; None when removed); None for a position record."""
    key = json.loads(r.key)
    if key.startswith(POSITION_PREFIX):
        return None
    return key, None if r.value is None else DocState.model_validate(json.loads(r.value))


def read_objects(settings: Settings, *, vectors: bool, misplaced: list[str] | None = None
                 ) -> tuple[list[StoredObject], dict[str, list[float]]]:
    """Every chunk in Weaviate (of every tenant shard, with multi-tenancy); ``misplaced`` collects
    each chunk found in a shard other than its tenant's."""
    client = client_for(settings)
    objects: list[StoredObject] = []
    vecs: dict[str, list[float]] = {}
    try:
        coll = client.collections.use(settings.collection)
        shards: list[str | None] = [*sorted(coll.tenants.get())] if settings.multi_tenancy else [None]
        found = ((shard, o) for shard in shards
                 for o in (coll.with_tenant(shard) if shard is not None else coll).iterator(
                     include_vector=vectors, return_properties=["doc_id", "tenant", "content_hash"]))
        for shard, o in tqdm(found, desc="weaviate", unit="chunk"):
            p = o.properties
            tenant = str(p.get("tenant") or "") or None
            key = document_key(tenant, str(p["doc_id"]))
            objects.append(StoredObject(str(o.uuid), key, str(p["content_hash"]), shard))
            if vectors:
                vecs[str(o.uuid)] = list(o.vector[VECTOR_NAME])
            if shard is not None and misplaced is not None and (tenant is None or weaviate_tenant(tenant) != shard):
                misplaced.append(f"{key!r}: chunk {o.uuid} is in tenant shard {shard!r}, not its tenant's")
    finally:
        client.close()
    return objects, vecs


@dataclass(frozen=True)
class Survey:
    """The three views of the index one run reads, and the differences found between them."""

    expected: dict[str, Expected]
    states: dict[str, DocState]
    objects: list[StoredObject]
    vectors: dict[str, list[float]]
    problems: list[str]


def survey(settings: Settings, embedder: SentenceTransformerEmbedder, *, vectors: bool = False) -> Survey:
    """Read the changes topic (chunking each latest version afresh), Weaviate and the state table,
    in that order, and compare them (not the vectors)."""
    chunked: dict[tuple[int, int], list[Chunk]] = {}

    def chunk(se: Sourced) -> list[Chunk]:
        at = (se.partition, se.offset)
        if at not in chunked:
            chunked[at] = chunk_document(se.event.content or "", content_type=se.event.content_type,
                                         max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens,
                                         min_chars=settings.chunk_min_chars, title=se.event.title,
                                         context=settings.chunk_context)
        return chunked[at]

    def refused(se: Sourced) -> bool:  # dead-lettered by the indexer as too_many_chunks
        return se.event.op == "upsert" and len(chunk(se)) > settings.max_chunks_per_document

    expected = expected_documents(applicable_versions(read_changes(settings), refused), chunk)
    misplaced: list[str] = []
    objects, stored_vectors = read_objects(settings, vectors=vectors, misplaced=misplaced)
    written: list[tuple[int, int, str | None, str | None]] = []
    states = read_states(settings, written)
    problems = misplaced + compare(expected, states, objects)
    problems += [f"state changelog: {v}" for v in fence_violations(written)]
    return Survey(expected, states, objects, stored_vectors, problems)


def run_verify(settings: Settings, *, vectors: bool = False, tolerance: float = 1e-4) -> list[str]:
    """Every difference found (an empty list means the index is exactly a fresh load)."""
    embedder = SentenceTransformerEmbedder.for_settings(settings)
    found = survey(settings, embedder, vectors=vectors)
    problems = found.problems
    if vectors:
        problems += _compare_vectors(embedder, found.expected, found.vectors, tolerance)
    return problems


def _compare_vectors(embedder: SentenceTransformerEmbedder, expected: dict[str, Expected],
                     stored: dict[str, list[float]], tolerance: float) -> list[str]:
    pairs = [(cid, c) for exp in expected.values() for cid, c in zip(exp.chunk_ids, exp.chunks, strict=True)
             if cid in stored]
    problems = []
    for start in tqdm(range(0, len(pairs), 256), desc="re-embedding", unit="batch"):
        part = pairs[start : start + 256]
        fresh = embedder.embed([c.embed_text for _, c in part])
        for (cid, _), vec in zip(part, fresh, strict=True):
            diff = max(abs(a - b) for a, b in zip(vec, stored[cid], strict=True))
            if diff > tolerance:
                problems.append(f"chunk {cid}: stored vector differs from a fresh embedding by {diff:.2e}")
    return problems


@dataclass(frozen=True)
class RepairReport:
    """What ``freshet verify --repair`` found and did."""

    problems: list[str]
    """The differences found before repairing."""
    rewritten: int = 0
    deleted: int = 0
    reused: int = 0
    """Vectors taken from objects still stored in Weaviate with the same content hash."""
    cached: int = 0
    """Vectors taken from the in-process embedding cache."""
    embedded: int = 0
    """Chunks the model embedded (nothing held their vector)."""
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_repair(settings: Settings, *, cache: EmbeddingCache | None = None) -> RepairReport:
    """Bring Weaviate back to the applied version of every document whose indexer state is the
    fresh chunking of its latest version (:func:`~workers.verification.plan_repair`): rewrite what
    it lacks, delete what it should not hold, embedding only what no stored object or cache holds.

    A document whose state record changes between the survey and the writes (the running indexer
    applied a newer version) is left alone; see docs/repair.md for the window that remains.
    """
    started = time.perf_counter()
    since = _changelog_ends(settings)  # before reading anything: every later state write is seen
    embedder = SentenceTransformerEmbedder.for_settings(settings)
    found = survey(settings, embedder)
    if not found.problems:
        return RepairReport([], seconds=time.perf_counter() - started)
    cache = cache if cache is not None else EmbeddingCache(settings.embed_cache_size)
    model = embedder.model_id
    plan = plan_repair(found.expected, found.states, found.objects, multi_tenancy=settings.multi_tenancy,
                       cached=lambda h: cache.get(model, h) is not None)
    vectors: dict[str, Vector] = {h: vec for h in plan.cached if (vec := cache.get(model, h)) is not None}
    from_cache = len(vectors)
    reused = _stored_vectors(settings, plan.reuse)
    vectors.update(reused)
    # plan.embed, and any chunk whose stored object went (or changed) since the survey
    todo = {w.chunk.content_hash: w.chunk.embed_text for w in plan.writes if w.chunk.content_hash not in vectors}
    for h, vec in _embed(embedder, todo).items():
        vectors[h] = vec
        cache.put(model, h, vec)
    plan = plan.without(moved(plan, _states_since(settings, since)))
    now = datetime.now(UTC)
    records = [chunk_record(w.id, w.chunk, w.source, w.title, vectors[w.chunk.content_hash], now) for w in plan.writes]
    asyncio.run(_upsert(settings, records))
    deleted = _delete(settings, plan.deletes)
    report = RepairReport(found.problems, len(records), deleted, len(reused), from_cache, len(todo), plan.skipped,
                          round(time.perf_counter() - started, 3))
    log.info("repair_done", rewritten=report.rewritten, deleted=deleted, reused=report.reused, cached=from_cache,
             embedded=report.embedded, skipped=len(plan.skipped), seconds=report.seconds)
    return report


def _changelog_ends(settings: Settings) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**settings.kafka_access.kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="freshet-tools")
    try:
        topic = state_topic(settings)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return dict(consumer.end_offsets(tps)) if tps else {}
    finally:
        consumer.close()


def _states_since(settings: Settings, since: Mapping[TopicPartition, int]) -> dict[str, DocState | None]:
    """The states written to the changelog from offsets ``since`` to its current end (the last per key)."""
    out: dict[str, DocState | None] = {}
    if not since:
        return out
    consumer = KafkaConsumer(**settings.kafka_access.kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="freshet-tools")
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(list(since))
        while any(consumer.position(tp) < end[tp] for tp in since):
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                for r in batch:
                    if r.offset < end[tp] and (entry := state_record(r)) is not None:
                        out[entry[0]] = entry[1]
    finally:
        consumer.close()
    return out


def _stored_vectors(settings: Settings, reuse: Mapping[str, tuple[str, str | None]]) -> dict[str, Vector]:
    """The vectors of the objects ``reuse`` names, by content hash; an object gone meanwhile (or
    holding other content by now) is left out, and its chunk is embedded instead."""
    wanted: dict[str | None, dict[str, str]] = defaultdict(dict)
    for h, (oid, shard) in reuse.items():
        wanted[shard][oid] = h
    out: dict[str, Vector] = {}
    client = client_for(settings)
    try:
        coll = client.collections.use(settings.collection)
        with tqdm(total=len(reuse), desc="stored vectors", unit="chunk") as bar:
            for shard, at, part in _shard_batches(coll, {s: list(ids) for s, ids in wanted.items()}, 200):
                res = at.query.fetch_objects(filters=Filter.by_id().contains_any(part), limit=len(part),
                                             include_vector=True, return_properties=["content_hash"])
                for o in res.objects:
                    h = wanted[shard][str(o.uuid)]
                    if o.properties.get("content_hash") == h and VECTOR_NAME in o.vector:
                        out[h] = list(o.vector[VECTOR_NAME])
                bar.update(len(part))
    finally:
        client.close()
    return out


def _shard_batches(coll: Any, ids_by_shard: Mapping[str | None, Sequence[str]], size: int
                   ) -> Iterator[tuple[str | None, Any, list[str]]]:
    """(shard, the collection as that shard, up to ``size`` of its ids) for every shard's ids."""
    for shard, ids in ids_by_shard.items():
        at = coll.with_tenant(shard) if shard is not None else coll
        for start in range(0, len(ids), size):
            yield shard, at, list(ids[start : start + size])


def _embed(embedder: SentenceTransformerEmbedder, todo: Mapping[str, str]) -> dict[str, Vector]:
    hashes = sorted(todo, key=lambda h: len(todo[h]))  # like lengths batch together
    out: dict[str, Vector] = {}
    for start in tqdm(range(0, len(hashes), 64), desc="embedding", unit="batch"):
        part = hashes[start : start + 64]
        out.update(zip(part, embedder.embed([todo[h] for h in part]), strict=True))
    return out


async def _upsert(settings: Settings, records: Sequence[ChunkRecord]) -> None:
    """Write through the indexer's own store adapter: the same objects, properties and tenant shards."""
    if not records:
        return
    store = store_for(settings)
    await store.start()
    try:
        for start in tqdm(range(0, len(records), 100), desc="rewriting", unit="batch"):
            await store.upsert(records[start : start + 100])
    finally:
        await store.close()


def _delete(settings: Settings, removals: Sequence[Removal]) -> int:
    """Delete by shard (an object in another tenant's shard is deleted there); return how many went."""
    by_shard: dict[str | None, list[str]] = defaultdict(list)
    for d in removals:
        by_shard[d.shard].append(d.id)
    deleted = 0
    client = client_for(settings)
    try:
        coll = client.collections.use(settings.collection)
        with tqdm(total=len(removals), desc="deleting", unit="chunk") as bar:
            for shard, at, part in _shard_batches(coll, by_shard, 500):
                result = at.data.delete_many(where=Filter.by_id().contains_any(part))
                if result.failed:
                    raise StoreError(f"Weaviate failed {result.failed} of {len(part)} deletes in shard "
                                     f"{shard!r} of {settings.collection!r}; run `freshet verify --repair` again")
                deleted += int(result.successful)
                bar.update(len(part))
    finally:
        client.close()
    return deleted
