import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.change import ChangeEvent
from workers.indexing import Indexer, SourcedEvent, chunk_id, latest_per_document
from workers.store import ChunkRecord, StoredHit, StoreQuery


class WordEmbedder:
    """A stand-in of the Embedder protocol: deterministic 3-d vectors, counts calls."""

    model_id = "test"
    max_tokens = 50

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded += texts
        return [[float(len(t)), 1.0, 0.0] for t in texts]


class DictStore:
    """A stand-in of the ChunkStore protocol, in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, ChunkRecord] = {}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.objects.update({r.id: r for r in records})

    async def delete_document(self, tenant: str | None, doc_id: str, *, keep: Sequence[str] = ()) -> int:
        gone = [k for k, r in self.objects.items() if (r.tenant, r.doc_id) == (tenant, doc_id) and k not in keep]
        for k in gone:
            del self.objects[k]
        return len(gone)

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        return []


def sourced(offset: int, **fields: object) -> SourcedEvent:
    return SourcedEvent(ChangeEvent.model_validate(fields), 0, offset, datetime(2026, 1, 1, tzinfo=UTC))


def test_chunk_ids_are_stable_and_tell_repeats_apart() -> None:
    a = chunk_id("t", "d", "h", 0)
    assert a == chunk_id("t", "d", "h", 0)
    assert len({a, chunk_id("t", "d", "h", 1), chunk_id(None, "d", "h", 0), chunk_id("t", "e", "h", 0)}) == 4


def test_latest_event_per_document_wins_within_a_batch() -> None:
    evs = [sourced(1, doc_id="a", op="upsert", version=1, content="x"),
           sourced(2, doc_id="b", op="upsert", version=1, content="y"),
           sourced(3, doc_id="a", op="delete", version=2)]
    assert [(s.event.doc_id, s.offset) for s in latest_per_document(evs)] == [("b", 2), ("a", 3)]


def test_apply_writes_replaces_and_deletes() -> None:
    store, emb = DictStore(), WordEmbedder()
    idx = Indexer(emb, store)
    doc = "# T\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(3))
    applied = asyncio.run(idx.apply([sourced(1, doc_id="d", op="upsert", version=1, content=doc)]))
    assert len(store.objects) == 3 and applied[0].chunk_ids == sorted(store.objects, key=applied[0].chunk_ids.index)
    # Replaying the same event rewrites the same ids: nothing new, nothing lost.
    asyncio.run(idx.apply([sourced(1, doc_id="d", op="upsert", version=1, content=doc)]))
    assert set(store.objects) == set(applied[0].chunk_ids)
    # Dropping a paragraph removes exactly its chunk.
    shorter = doc.rsplit("\n\n", 1)[0]
    asyncio.run(idx.apply([sourced(2, doc_id="d", op="upsert", version=2, content=shorter)]))
    assert len(store.objects) == 2
    asyncio.run(idx.apply([sourced(3, doc_id="d", op="delete", version=3)]))
    assert store.objects == {}
