"""``freshet verify``: the index against a fresh chunking of the latest versions on the changes topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tqdm import tqdm

from freshet.client import read_to_end
from freshet.errors import InvalidEventError
from freshet.settings import Settings
from schemas.change import document_key, parse_change
from workers.chunking import Chunk, chunk_document
from workers.delivery import POSITION_PREFIX
from workers.embedding import SentenceTransformerEmbedder
from workers.fencing import GENERATION_HEADER, WRITER_HEADER, fence_violations, header
from workers.planning import DocState, Sourced
from workers.tenancy import check_event_tenant, weaviate_tenant
from workers.topology import state_changelog
from workers.verification import Expected, StoredObject, applicable_versions, compare, expected_documents
from workers.weaviate_store import VECTOR_NAME, client_for


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
        key = json.loads(r.key)
        if key.startswith(POSITION_PREFIX):
            continue
        if r.value is None:
            states.pop(key, None)
        else:
            states[key] = DocState.model_validate(json.loads(r.value))
    return states


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
            objects.append(StoredObject(str(o.uuid), key, str(p["content_hash"])))
            if vectors:
                vecs[str(o.uuid)] = list(o.vector[VECTOR_NAME])
            if shard is not None and misplaced is not None and (tenant is None or weaviate_tenant(tenant) != shard):
                misplaced.append(f"{key!r}: chunk {o.uuid} is in tenant shard {shard!r}, not its tenant's")
    finally:
        client.close()
    return objects, vecs


def run_verify(settings: Settings, *, vectors: bool = False, tolerance: float = 1e-4) -> list[str]:
    """Every difference found (an empty list means the index is exactly a fresh load)."""
    embedder = SentenceTransformerEmbedder.for_settings(settings)

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
    problems = misplaced + compare(expected, read_states(settings, written), objects)
    problems += [f"state changelog: {v}" for v in fence_violations(written)]
    if vectors:
        problems += _compare_vectors(embedder, expected, stored_vectors, tolerance)
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
