"""Generations: which settings make a new index, and its collection name."""

from __future__ import annotations

import pytest

from freshet.settings import Settings
from workers.embedding import SentenceTransformerEmbedder
from workers.generation import collection_name, generation_of


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
    assert not g.vectors_compatible(generation_of(Settings(model_backend="onnx-int8")))
    assert not g.vectors_compatible(generation_of(Settings(embed_title="none")))


def test_collection_names_carry_the_fingerprint_and_refuse_bad_bases() -> None:
    g = generation_of(Settings())
    assert collection_name("FreshetChunk", g) == f"FreshetChunk_{g.fingerprint}"
    for bad in ("freshetChunk", "Freshet-Chunk", ""):
        with pytest.raises(ValueError, match="capital letter"):
            collection_name(bad, g)
