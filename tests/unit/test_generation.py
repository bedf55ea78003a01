"""Generations: which settings make a new index, and its collection name."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from freshet.errors import ConfigError
from freshet.reindex import caught_up, parse_sets
from freshet.settings import Settings
from schemas.applied import GENERATION_SEPARATOR, applied_key, progress_key
from schemas.change import ChangeEvent, split_key
from schemas.generations import parse_generation
from schemas.search import SearchRequest
from tests.unit.fakes import DictStore, WordEmbedder
from tests.unit.test_indexing import DOC
from workers.applied_view import AppliedView
from workers.embedding import BatchingEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from workers.generation import adopt, check_generation, collection_name, generation_of, generation_record
from workers.indexing import Indexer
from workers.planning import Sourced
from workers.search import Searcher, Serving
from workers.stats import IndexerStats, QueryStats


def _gen(**kw: object) -> str:
    return generation_of(Settings(**kw)).fingerprint  # type: ignore[arg-type]


def test_settings_that_change_objects_change_the_generation() -> None:
    base = _gen()
    changed = {
        "model": _gen(model="/models/other"),
        "int8": _gen(model_backend="onnx-int8"),
        "min_chars": _gen(chunk_min_chars=250),
        "title": _gen(embed_title="all"),
        "headings": _gen(embed_headings=True),
        "schema": _gen(metadata_fields="lang:text"),
        "tenancy": _gen(multi_tenancy=True),
    }
    assert all(fp != base for fp in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_settings_that_keep_objects_keep_the_generation() -> None:
    base = _gen()
    assert _gen(embed_batch_size=32, index_batch_size=7, model_device="cuda") == base
    assert _gen(model_backend="bert") == _gen(model_backend="sentence-transformers") == base
    assert _gen(metadata_fields="year:int, lang:text") == _gen(metadata_fields="lang:text,year:int")


def test_the_model_id_is_the_one_the_embedding_cache_uses() -> None:
    for s in (Settings(), Settings(model="/m/x", model_backend="onnx-int8"), Settings(model_backend="onnx")):
        assert generation_of(s).model_id == SentenceTransformerEmbedder.for_settings(s).model_id


def test_vectors_are_reusable_across_a_chunker_only_change_but_not_a_model_change() -> None:
    g = generation_of(Settings())
    assert g.vectors_compatible(generation_of(Settings(chunk_min_chars=400)))
    assert g.vectors_compatible(generation_of(Settings(embed_title="none")))  # the content hash covers the context
    assert not g.vectors_compatible(generation_of(Settings(model_backend="onnx-int8")))
    assert not g.vectors_compatible(generation_of(Settings(model="/models/other")))


def test_collection_names_carry_the_fingerprint_and_refuse_bad_bases() -> None:
    g = generation_of(Settings())
    assert collection_name("FreshetChunk", g) == f"FreshetChunk_{g.fingerprint}"
    for bad in ("freshetChunk", "Freshet-Chunk", ""):
        with pytest.raises(ValueError, match="capital letter"):
            collection_name(bad, g)


# --- records, keys, adoption ------------------------------------------------------------------------

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def test_a_reindexed_generation_has_its_own_collection_groups_and_settings() -> None:
    base = Settings(collection="FreshetChunk", consumer_group_prefix="freshet")
    target, record = generation_record(base, {"chunk_min_chars": "400"}, state="building", at=NOW)
    assert record.generation == generation_of(target).fingerprint != generation_of(base).fingerprint
    assert target.collection == record.collection == f"FreshetChunk_{record.generation}"
    # the indexer's Kafka ACLs are prefixed by '<prefix>-indexer' (ops/secure.py): its groups stay inside
    assert target.consumer_group_prefix.startswith("freshet-indexer")
    assert target.generation == record.generation and target.chunk_min_chars == 400
    check_generation(target)  # the settings it names are its own


def test_reindex_changes_only_what_makes_a_generation() -> None:
    with pytest.raises(ConfigError, match="not topic_changes"):
        generation_record(Settings(), {"topic_changes": "elsewhere"}, state="building", at=NOW)


def test_a_worker_naming_a_generation_of_other_settings_is_refused() -> None:
    _, record = generation_record(Settings(), {"chunk_min_chars": 400}, state="building", at=NOW)
    with pytest.raises(ConfigError, match="FRESHET_GENERATION"):
        check_generation(Settings(generation=record.generation))  # chunk_min_chars left at 100


def test_workers_adopt_the_active_generation_unless_they_name_one() -> None:
    base = Settings(consumer_group_prefix="freshet")
    target, record = generation_record(base, {"chunk_min_chars": 400}, state="active", at=NOW)
    assert adopt(base, "indexer", None) is base  # nothing active yet: the first generation
    indexer = adopt(base, "indexer", record)
    assert (indexer.collection, indexer.consumer_group_prefix, indexer.chunk_min_chars, indexer.generation) == (
        target.collection, target.consumer_group_prefix, 400, record.generation)
    query = adopt(base, "query", record)
    assert query.collection == target.collection and query.generation == record.generation
    assert query.consumer_group_prefix == "freshet"  # its requests' position stays where it was
    builder = Settings(generation="abc")  # started by freshet reindex for another generation
    assert adopt(builder, "indexer", record) is builder


def test_generation_records_round_trip_their_json() -> None:
    _, record = generation_record(Settings(), {"model_backend": "onnx-int8"}, state="building", at=NOW,
                                  replaces="FreshetChunk")
    assert parse_generation(record.model_dump_json().encode()) == record


def test_applied_keys_of_two_generations_never_collide() -> None:
    assert applied_key("a.md") == b"a.md" and progress_key(3) == b"\x00progress/3"  # the first: unchanged
    assert applied_key("a.md", "0123456789") != applied_key("a.md")
    assert progress_key(3, "0123456789") != progress_key(3)
    tenant_key = applied_key("acme\x1fa.md", "0123456789").decode()
    assert split_key(tenant_key.split(GENERATION_SEPARATOR, 1)[1]) == ("acme", "a.md")


# --- serving and building ---------------------------------------------------------------------------


class _Vectors:
    """A previous generation's vectors by content hash."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors, self.asked = vectors, 0

    async def start(self) -> None: ...

    async def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, list[float]]:
        self.asked += len(hashes)
        return {h: v for h, v in self.vectors.items() if h in hashes}


def test_a_new_generation_takes_stored_vectors_and_embeds_only_the_rest() -> None:
    event = Sourced(ChangeEvent(doc_id="d", op="upsert", version=1, content=DOC), 0, 0)
    old = Indexer(WordEmbedder(), DictStore(), EmbeddingCache(0), IndexerStats())
    asyncio.run(old.apply([event], {}))
    previous = {r.content_hash: list(r.vector) for r in old._store.objects.values()}  # type: ignore[attr-defined]
    kept = dict(list(previous.items())[:2])  # one chunk's vector is not stored any more
    model, store, stats = WordEmbedder(), DictStore(), IndexerStats()
    new = Indexer(model, store, EmbeddingCache(0), stats, generation="g2", reuse=_Vectors(kept))
    [applied] = asyncio.run(new.apply([event], {}))
    assert (stats.chunks_reused, stats.chunks_embedded) == (2, 1) and len(model.embedded) == 1
    assert {r.content_hash: list(r.vector) for r in store.objects.values()} == previous
    assert applied.record.generation == "g2"


def test_a_search_in_flight_finishes_on_the_generation_it_started_on() -> None:
    first, second = DictStore(), DictStore()
    view = AppliedView()
    searcher = Searcher(WordEmbedder(), first, view, QueryStats(), metadata_schema={})
    gate = asyncio.Event()

    async def scenario() -> tuple[str | None, str | None]:
        async def slow_embed(s: Serving, query: str) -> list[float]:
            await gate.wait()
            return [1.0, 1.0, 1.0]

        searcher._vector = slow_embed  # type: ignore[method-assign]
        req = SearchRequest(request_id="r", query="story", mode="vector")
        flight = asyncio.ensure_future(searcher.search(req))
        await asyncio.sleep(0)
        old = searcher.switch(Serving("g2", WordEmbedder(), second, AppliedView(), BatchingEmbedder(WordEmbedder())))
        gate.set()
        in_flight = await flight
        after = await searcher.search(req.model_copy(update={"request_id": "r2"}))
        assert old.store is first and searcher.store is second
        return in_flight.generation, after.generation

    assert asyncio.run(scenario()) == (None, "g2")
    assert len(first.queries) == 1 and len(second.queries) == 1


def test_reindex_settings_are_named_either_way_and_only_those_of_a_generation() -> None:
    assert parse_sets(["chunk_min_chars=400", "FRESHET_MODEL_BACKEND=onnx-int8"]) == {
        "chunk_min_chars": "400", "model_backend": "onnx-int8"}
    for bad in ("chunk_min_chars", "topic_changes=x", "FRESHET_COLLECTION=Other"):
        with pytest.raises(ConfigError, match="NAME=VALUE"):
            parse_sets([bad])


def test_a_generation_is_caught_up_when_every_partition_is_handled_to_its_end() -> None:
    assert caught_up({0: 10, 1: 4}, {0: 10, 1: 4})
    assert caught_up({0: 10}, {0: 10, 1: 0})  # an empty partition has nothing to handle
    assert not caught_up({0: 10, 1: 3}, {0: 10, 1: 4})
    assert not caught_up({}, {0: 1})
