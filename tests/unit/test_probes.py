"""The searchability probe finds a new chunk by its stored vector, without running the model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.applied import AppliedRecord
from tests.unit.fakes import DictStore, WordEmbedder
from workers.applied_view import AppliedView
from workers.probes import Probes
from workers.search import Searcher
from workers.stats import QueryStats
from workers.store import StoredHit, StoreQuery

CHUNK = str(uuid.uuid5(uuid.NAMESPACE_URL, "a.md/1/0"))
VECTOR = [0.6, 0.8, 0.0]


class OneChunkStore(DictStore):
    """A store holding one chunk of ``a.md``: fetched with its vector, found by exactly that vector."""

    async def fetch(self, ids: Sequence[str], *, tenant: str | None = None,
                    with_vectors: bool = False) -> list[StoredHit]:
        return [StoredHit(id=CHUNK, score=0.0, properties={"doc_id": "a.md", "text": "# A\n\nSome text."},
                          vector=VECTOR if with_vectors else None) for i in ids if i == CHUNK]

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        self.queries.append(query)
        found = query.vector is not None and list(query.vector) == VECTOR
        return [StoredHit(id=CHUNK, score=1.0, properties={"doc_id": "a.md"})] if found else []


def test_a_new_chunk_is_found_by_its_stored_vector_and_the_model_is_not_run() -> None:
    embedder, store, view = WordEmbedder(), OneChunkStore(), AppliedView()
    view.track_recent = True
    view.apply(AppliedRecord(doc_id="a.md", version=1, op="upsert", chunk_ids=[CHUNK], source_partition=0,
                             source_offset=0, event_time=datetime.now(UTC), applied_at=datetime.now(UTC)))
    searcher = Searcher(embedder, store, view, QueryStats(), metadata_schema={})
    asyncio.run(Probes(searcher).searchability())
    assert [q.mode for q in store.queries] == ["vector"]
    assert searcher.probes.searchability_share == 1.0
    assert embedder.embedded == []  # the probe costs the model nothing
