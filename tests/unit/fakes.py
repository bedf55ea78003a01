"""Stand-ins of freshet's own protocols (Embedder, ChunkStore) for pure unit tests."""

from __future__ import annotations

from collections.abc import Sequence

from workers.store import ChunkRecord, StoredHit, StoreQuery


class WordEmbedder:
    """Embedder protocol: tokens are words; vectors are deterministic; remembers what it embedded."""

    model_id = "test-model"
    max_tokens = 60

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded += texts
        return [[float(len(t)), float(sum(map(ord, t)) % 97), 1.0] for t in texts]


class DictStore:
    """ChunkStore protocol over a dict of id -> record."""

    def __init__(self) -> None:
        self.objects: dict[str, ChunkRecord] = {}
        self.property_updates = 0
        self.queries: list[StoreQuery] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.objects.update({r.id: r for r in records})

    async def update_properties(self, records: Sequence[ChunkRecord]) -> None:
        for r in records:
            old = self.objects[r.id]
            self.objects[r.id] = ChunkRecord(**{**{f: getattr(r, f) for f in r.__slots__}, "vector": old.vector})
            self.property_updates += 1

    async def delete_ids(self, ids: Sequence[str], *, tenant: str | None = None) -> int:
        gone = [i for i in ids if i in self.objects]
        for i in gone:
            del self.objects[i]
        return len(gone)

    async def delete_document(self, tenant: str | None, doc_id: str, *, keep: Sequence[str] = ()) -> int:
        gone = [k for k, r in self.objects.items() if (r.tenant, r.doc_id) == (tenant, doc_id) and k not in keep]
        return await self.delete_ids(gone)

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        self.queries.append(query)
        return []
