"""The Weaviate adapter against the real server: ids, idempotence, per-object errors, search, and
which failures are the object's fault (rejected) and which the store's (waited out)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from freshet.errors import ConfigError, ObjectRejectedError, StoreUnavailableError
from freshet.settings import Settings
from ops import procs
from ops.stack import Stack, isolated
from tests.integration.conftest import Endpoints, make_settings
from workers.ids import chunk_id
from workers.store import ChunkRecord, HnswConfig, StoreQuery
from workers.tenancy import weaviate_tenant
from workers.weaviate_store import WeaviateChunkStore, sync_client

pytestmark = pytest.mark.integration


def record(doc: str, n: int, text: str, vector: list[float], tenant: str | None = None) -> ChunkRecord:
    return ChunkRecord(id=chunk_id(tenant, doc, f"h{n}", 0), doc_id=doc, tenant=tenant, title="T", heading_path=("T",),
                       position=n, text=text, version=1, content_hash=f"h{n}", vector=vector, metadata={},
                       event_time=None, indexed_at=datetime.now(UTC))


def store_of(s: Settings, metadata_fields: dict[str, str] | None = None, *,
             multi_tenancy: bool = False) -> WeaviateChunkStore:
    return WeaviateChunkStore(host=s.weaviate_host, http_port=s.weaviate_http_port, grpc_port=s.weaviate_grpc_port,
                              collection=s.collection, metadata_fields=metadata_fields, multi_tenancy=multi_tenancy)


def store_errors(kind: str) -> float:
    return REGISTRY.get_sample_value("freshet_weaviate_errors_total", {"kind": kind}) or 0.0


@contextmanager
def read_only(s: Settings) -> Iterator[None]:
    """The shards of this test's own collection READONLY (as Weaviate sets them on disk pressure)."""
    client = sync_client(s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    shards = client.collections.use(s.collection).config
    try:
        shards.update_shards("READONLY")
        yield
    finally:
        shards.update_shards("READY")
        client.close()


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


def test_the_hnsw_settings_make_the_index_and_ef_follows_the_setting(isolated: Settings) -> None:
    """efConstruction and maxConnections are set when the store makes the collection (then kept, a
    difference only logged); ef is set again at every start, so a changed setting takes effect."""
    def index_config() -> tuple[int, int, int]:
        client = sync_client(isolated.weaviate_host, isolated.weaviate_http_port, isolated.weaviate_grpc_port)
        try:
            vectors = client.collections.use(isolated.collection).config.get().vector_config
            assert vectors is not None
            index = next(iter(vectors.values())).vector_index_config
            return index.ef, index.ef_construction, index.max_connections  # type: ignore[union-attr]
        finally:
            client.close()

    async def start_with(hnsw: HnswConfig) -> None:
        store = WeaviateChunkStore(host=isolated.weaviate_host, http_port=isolated.weaviate_http_port,
                                   grpc_port=isolated.weaviate_grpc_port, collection=isolated.collection, hnsw=hnsw)
        await store.start()
        try:
            await store.upsert([record("d", 0, "alpha", [1.0, 0.0, 0.0])])
            hits = await store.search(StoreQuery(mode="vector", text="", vector=[1.0, 0.0, 0.0], limit=1))
            assert [h.id for h in hits] == [record("d", 0, "", []).id]
        finally:
            await store.close()

    asyncio.run(start_with(HnswConfig(ef=24, ef_construction=64, max_connections=8)))
    assert index_config() == (24, 64, 8)
    asyncio.run(start_with(HnswConfig(ef=-1, ef_construction=128, max_connections=32)))
    assert index_config() == (-1, 64, 8)


def test_a_read_only_shard_is_waited_out_and_nothing_is_lost(isolated: Settings) -> None:
    """Weaviate reports a read-only shard as ONE per-object error (index 0) for a whole batch of
    which nothing was written: the batch must fail as a whole, as the store's fault."""
    async def scenario() -> None:
        store = store_of(isolated)
        await store.start()
        try:
            seed = record("d", 0, "alpha", [1.0, 0.0, 0.0])
            await store.upsert([seed])
            recs = [record("e", n, f"text {n}", [0.0, 1.0, 0.0]) for n in range(3)]
            before = store_errors("readonly")
            with read_only(isolated):
                with pytest.raises(StoreUnavailableError, match="read-only") as caught:
                    await store.upsert(recs)
                assert caught.value.kind == "readonly"
                with pytest.raises(StoreUnavailableError, match="read-only"):
                    await store.update_properties([dataclasses.replace(seed, position=7, vector=())])
                with pytest.raises(StoreUnavailableError, match="read-only"):
                    await store.delete_ids([seed.id])
                with pytest.raises(StoreUnavailableError, match="read-only"):
                    await store.delete_document(None, "d")
                assert [h.id for h in await store.fetch([seed.id])] == [seed.id]  # reads go on
            assert store_errors("readonly") == before + 4
            await store.upsert(recs)  # the same call, once the shard is writable again
            assert {h.id for h in await store.fetch([r.id for r in recs])} == {r.id for r in recs}
            with_vector = {h.id: h.vector for h in await store.fetch([r.id for r in recs], with_vectors=True)}
            assert with_vector == {r.id: pytest.approx(list(r.vector)) for r in recs}
            assert all(h.vector is None for h in await store.fetch([r.id for r in recs]))
        finally:
            await store.close()

    asyncio.run(scenario())


def test_only_an_events_invalid_metadata_is_rejected_by_name(isolated: Settings) -> None:
    """A metadata value the declared type refuses is the event's fault; vectors of another length
    (the model changed, the collection did not) are not, whatever Weaviate calls them."""
    async def scenario() -> None:
        store = store_of(isolated, {"year": "int"})
        await store.start()
        try:
            await store.upsert([record("d", 0, "three dims", [1.0, 0.0, 0.0])])
            rejected, mismatch = store_errors("rejected"), store_errors("schema_mismatch")
            good, wide = record("d", 1, "three again", [0.0, 1.0, 0.0]), record("e", 2, "four", [1.0, 0.0, 0.0, 0.0])
            with pytest.raises(StoreUnavailableError, match="vector dimensions") as waited:
                await store.upsert([good, wide])
            assert waited.value.kind == "schema_mismatch"
            with pytest.raises(StoreUnavailableError, match="vector dimensions"):  # all of a batch failing
                await store.upsert([wide])
            typed = dataclasses.replace(record("f", 3, "typed", [0.0, 0.0, 1.0]), metadata={"year": "MMXXVI"})
            with pytest.raises(ObjectRejectedError, match="invalid integer property 'm_year'") as caught:
                await store.upsert([typed, good])
            assert [(r.id, r.doc_id) for r in caught.value.rejected] == [(typed.id, "f")]
            assert caught.value.written == (good.id,) and caught.value.documents == {(None, "f")}
            assert [h.id for h in await store.fetch([typed.id, good.id])] == [good.id]
            with pytest.raises(ObjectRejectedError) as caught:  # all of a batch rejected
                await store.upsert([typed])
            assert [r.id for r in caught.value.rejected] == [typed.id] and caught.value.written == ()
            with pytest.raises(ObjectRejectedError, match="invalid integer property 'm_year'") as caught:
                await store.update_properties([dataclasses.replace(good, metadata={"year": "MMXXVI"}, vector=())])
            assert [r.id for r in caught.value.rejected] == [good.id]
            assert (store_errors("rejected"), store_errors("schema_mismatch")) == (rejected + 3, mismatch + 2)
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.fixture
def starved_weaviate(endpoints: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> Iterator[tuple[Settings, Stack]]:
    """A Weaviate server of this test's own whose Go heap limit is far below what it uses, so its
    memory check refuses every write ("not enough memory"); the test restarts it without the limit."""
    base = make_settings(endpoints, tmp_path)
    settings = isolated(base, f"test-{uuid.uuid4().hex[:10]}", tmp_path / "own", weaviate_host="127.0.0.1",
                        weaviate_http_port=procs.free_port(), weaviate_grpc_port=procs.free_port())
    stack = Stack(settings)
    with monkeypatch.context() as env:
        env.setenv("GOMEMLIMIT", "20MiB")
        stack.up(["weaviate"])
    try:
        yield settings, stack
    finally:
        stack.down(["weaviate"])


def test_memory_pressure_is_waited_out_not_rejected(starved_weaviate: tuple[Settings, Stack]) -> None:
    settings, stack = starved_weaviate
    recs = [record("d", n, f"text {n}", [0.1 * (n + 1), 0.0, 1.0]) for n in range(3)]

    async def starved() -> None:
        store = store_of(settings)
        await store.start()
        try:
            before = store_errors("memory")
            with pytest.raises(StoreUnavailableError, match="not enough memory") as caught:
                await store.upsert(recs)
            assert caught.value.kind == "memory"
            with pytest.raises(StoreUnavailableError, match="not enough memory"):
                await store.delete_ids([recs[0].id])
            assert store_errors("memory") == before + 2
        finally:
            await store.close()

    async def relieved() -> None:
        store = store_of(settings)
        await store.start()
        try:
            await store.upsert(recs)
            assert len(await store.fetch([r.id for r in recs])) == 3
        finally:
            await store.close()

    asyncio.run(starved())
    stack.down(["weaviate"])
    stack.up(["weaviate"])
    asyncio.run(relieved())


#: Tenants whose names Weaviate takes as they are, and one it does not (encoded).
TENANTS = ("acme", "Acme", "acme/eu west")


def test_a_multi_tenant_store_keeps_each_tenant_in_a_shard_of_its_own(isolated: Settings) -> None:
    """The same doc_id and words in three tenants: every read, write and delete reaches one shard."""
    async def scenario() -> None:
        store = store_of(isolated, multi_tenancy=True)
        await store.start()
        try:
            recs = {t: [record("d", 0, f"alpha shared words {t}", [1.0, 0.1 * i, 0.0], tenant=t),
                        record("d", 1, "beta shared words", [0.0, 1.0, 0.1 * i], tenant=t)]
                    for i, t in enumerate(TENANTS)}
            await store.upsert([r for rs in recs.values() for r in rs])  # one call, three shards
            await store.upsert([r for rs in recs.values() for r in rs])  # a replay: no duplicates
            assert shards(isolated) == {weaviate_tenant(t) for t in TENANTS}
            for t, own in recs.items():
                ids = {r.id for r in own}
                for mode in ("keyword", "vector", "hybrid"):
                    hits = await store.search(StoreQuery(mode=mode, text="alpha shared words", vector=[1.0, 0.0, 0.0],
                                                         limit=10, tenant=t))
                    assert {h.id for h in hits} == ids and {h.properties["tenant"] for h in hits} == {t}, mode
                assert {h.id for h in await store.fetch(sorted(ids), tenant=t)} == ids
                assert set(await store.vectors(100, tenant=t) or {}) == ids
            acme, other = recs["acme"], recs["Acme"]
            assert await store.fetch([other[0].id], tenant="acme") == []  # another tenant's id: not in this shard
            assert await store.delete_ids([other[0].id], tenant="acme") == 0
            assert await store.delete_document("acme", "d", keep=[acme[0].id]) == 1
            await store.update_properties([dataclasses.replace(acme[0], position=7, vector=())])
            assert (await store.fetch([acme[0].id], tenant="acme"))[0].properties["position"] == 7
            assert (await store.fetch([other[0].id], tenant="Acme"))[0].properties["position"] == 0
            # a tenant without a shard holds nothing: reads find nothing, deletes delete nothing
            for mode in ("keyword", "vector", "hybrid"):
                assert await store.search(StoreQuery(mode=mode, text="alpha", vector=[1.0, 0.0, 0.0], limit=5,
                                                     tenant="never")) == []
            assert await store.fetch([acme[0].id], tenant="never") == []
            assert await store.delete_ids([acme[0].id], tenant="never") == 0
            assert await store.delete_document("never", "d") == 0
            assert await store.vectors(100, tenant="never") == {}
            drop_shard(isolated, "Acme")  # as freshet tenant delete does; an update in flight meets no shard
            await store.update_properties([dataclasses.replace(other[0], position=9, vector=())])
            assert shards(isolated) == {weaviate_tenant(t) for t in TENANTS if t != "Acme"}
            assert {h.id for h in await store.fetch([r.id for r in recs["acme/eu west"]], tenant="acme/eu west")} \
                == {r.id for r in recs["acme/eu west"]}
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_multi_tenant_store_still_names_the_rejected_objects(isolated: Settings) -> None:
    """Per-object errors are checked in every tenant's batch: only the object at fault is rejected."""
    async def scenario() -> None:
        store = store_of(isolated, {"year": "int"}, multi_tenancy=True)
        await store.start()
        try:
            good = record("d", 0, "fine", [1.0, 0.0, 0.0], tenant="acme")
            typed = dataclasses.replace(record("d", 1, "typed", [0.0, 1.0, 0.0], tenant="globex"),
                                        metadata={"year": "MMXXVI"})
            also = record("e", 2, "fine too", [0.0, 0.0, 1.0], tenant="globex")
            with pytest.raises(ObjectRejectedError, match="invalid integer property 'm_year'") as caught:
                await store.upsert([good, typed, also])
            assert [r.id for r in caught.value.rejected] == [typed.id] and caught.value.documents == {("globex", "d")}
            assert set(caught.value.written) == {good.id, also.id}
            assert [h.id for h in await store.fetch([good.id], tenant="acme")] == [good.id]
            assert [h.id for h in await store.fetch([typed.id, also.id], tenant="globex")] == [also.id]
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("made_with", [False, True])
def test_a_collection_made_with_the_other_tenancy_is_refused(isolated: Settings, made_with: bool) -> None:
    async def scenario() -> None:
        first = store_of(isolated, multi_tenancy=made_with)
        await first.start()
        await first.close()
        other = store_of(isolated, multi_tenancy=not made_with)
        with pytest.raises(ConfigError, match=f"FRESHET_MULTI_TENANCY={str(made_with).lower()}, or index into a new"):
            await other.start()
        again = store_of(isolated, multi_tenancy=made_with)  # the right setting still starts
        await again.start()
        await again.close()

    asyncio.run(scenario())


def shards(s: Settings) -> set[str]:
    client = sync_client(s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    try:
        return set(client.collections.use(s.collection).tenants.get())
    finally:
        client.close()


def drop_shard(s: Settings, tenant: str) -> None:
    client = sync_client(s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    try:
        client.collections.use(s.collection).tenants.remove([weaviate_tenant(tenant)])
    finally:
        client.close()
