"""The Weaviate adapter against the real server: ids, idempotence, per-object errors, search."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from freshet.errors import StoreError
from freshet.settings import Settings
from workers.ids import chunk_id
from workers.store import ChunkRecord, StoreQuery
from workers.weaviate_store import WeaviateChunkStore

pytestmark = pytest.mark.integration


def record(doc: str, n: int, text: str, vector: list[float], tenant: str | None = None) -> ChunkRecord:
    return ChunkRecord(id=chunk_id(tenant, doc, f"h{n}", 0), doc_id=doc, tenant=tenant, title="T", heading_path=("T",),
                       position=n, text=text, version=1, content_hash=f"h{n}", vector=vector, metadata={},
                       event_time=None, indexed_at=datetime.now(UTC))


def store_of(s: Settings) -> WeaviateChunkStore:
    return WeaviateChunkStore(host=s.weaviate_host, http_port=s.weaviate_http_port, grpc_port=s.weaviate_grpc_port,
                              collection=s.collection)


def test_upsert_is_idempotent_and_delete_keeps_what_it_is_told(isolated: Settings) -> None:
    async def scenario() -> None:
        store = store_of(isolated)
        await store.start()
        try:
            recs = [record("d", 0, "alpha beta", [1.0, 0.0, 0.0]), record("d", 1, "gamma delta", [0.0, 1.0, 0.0]),
                    record("e", 0, "alpha omega", [0.0, 0.0, 1.0])]
            await store.upsert(recs)
            await store.upsert(recs)  # a replay writes the same ids: no duplicates
            hits = await store.search(StoreQuery(mode="keyword", text="alpha", vector=None, limit=10))
            assert sorted(h.id for h in hits) == sorted([recs[0].id, recs[2].id])
            assert await store.delete_document(None, "d", keep=[recs[0].id]) == 1
            near = await store.search(StoreQuery(mode="vector", text="", vector=[0.0, 1.0, 0.0], limit=10))
            assert recs[1].id not in {h.id for h in near} and len(near) == 2
            assert await store.delete_document(None, "d") == 1
            assert await store.delete_document(None, "d") == 0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_per_object_errors_are_checked(isolated: Settings) -> None:
    async def scenario() -> None:
        store = store_of(isolated)
        await store.start()
        try:
            await store.upsert([record("d", 0, "three dims", [1.0, 0.0, 0.0])])
            good, bad = record("d", 1, "three again", [0.0, 1.0, 0.0]), record("d", 2, "four", [1.0, 0.0, 0.0, 0.0])
            with pytest.raises(StoreError, match="1 chunk writes still failing .* vector dimensions"):
                await store.upsert([good, bad])
            hits = await store.search(StoreQuery(mode="vector", text="", vector=[0.0, 1.0, 0.0], limit=10))
            assert good.id in {h.id for h in hits} and bad.id not in {h.id for h in hits}
            with pytest.raises(StoreError, match="vector dimensions"):  # all of a batch failing
                await store.upsert([bad])
        finally:
            await store.close()

    asyncio.run(scenario())
