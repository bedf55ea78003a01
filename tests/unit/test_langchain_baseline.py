"""The LangChain baseline benchmark counts the right things on tiny hand-checked histories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.bench.langchain_baseline import (
    CountingEmbeddings,
    Event,
    full_reembed_cost,
    langchain_edit_cost,
    load_events,
    new_paragraph_chars,
    paragraphs,
)

# chunk_size 10 keeps each 9-character paragraph a chunk of its own (9 + 2 + 9 > 10).
SIZE, OVERLAP = 10, 0


def upsert(doc_id: str, version: int, *paras: str) -> Event:
    return {"doc_id": doc_id, "op": "upsert", "version": version, "content": "\n\n".join(paras)}


def delete(doc_id: str, version: int) -> Event:
    return {"doc_id": doc_id, "op": "delete", "version": version}


HISTORY = [
    upsert("a", 1, "aaaa aaaa", "bbbb bbbb"),
    upsert("b", 1, "xxxx xxxx"),
    # edits start here (start=2)
    upsert("a", 2, "aaaa aaaa", "cccc cccc"),
    delete("b", 2),
    upsert("b", 3, "xxxx xxxx"),
    delete("a", 3),
]


def test_paragraphs_strip_and_drop_blank_ones() -> None:
    assert paragraphs("  one \n\n\n\ntwo\n \n\nthree\n") == ["one", "two", "three"]


def test_new_paragraphs_compare_with_the_previous_version_only() -> None:
    # a v2: "cccc cccc" is new (9); b v3 follows a delete, so all of it is new (9); deletes add nothing.
    assert new_paragraph_chars(HISTORY, start=2) == 18


def test_langchain_embeds_only_changed_chunks_and_deletes_whole_documents() -> None:
    cost = langchain_edit_cost(HISTORY, SIZE, OVERLAP, start=2)
    # a v2 embeds "cccc cccc", skips "aaaa aaaa", cleans "bbbb bbbb"; b is deleted then embedded anew;
    # deleting a removes its 2 chunks.
    assert cost == {"chars": 18, "texts": 2, "tokens": 0, "num_added": 2, "num_deleted": 4, "num_skipped": 1}


def test_an_unchanged_version_costs_nothing() -> None:
    history = [upsert("a", 1, "aaaa aaaa"), upsert("a", 2, "aaaa aaaa")]
    cost = langchain_edit_cost(history, SIZE, OVERLAP, start=1)
    assert cost == {"chars": 0, "texts": 0, "tokens": 0, "num_added": 0, "num_deleted": 0, "num_skipped": 1}


def test_full_reembed_counts_every_chunk_of_every_upsert() -> None:
    assert full_reembed_cost(HISTORY, SIZE, OVERLAP, start=2) == {"chars": 27, "texts": 3, "versions": 2}


def test_counting_embeddings_counts_queries_and_documents() -> None:
    embeddings = CountingEmbeddings()
    vectors = embeddings.embed_documents(["ab", "cde"])
    assert embeddings.embed_query("ab") == vectors[0]
    assert (embeddings.chars, embeddings.texts, len(vectors[1])) == (7, 3, 8)


def test_load_events_reads_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "edits.jsonl"
    path.write_text("\n".join(json.dumps(event) for event in HISTORY) + "\n", encoding="utf-8")
    assert load_events(path) == HISTORY


def test_an_unknown_op_is_rejected() -> None:
    with pytest.raises(ValueError, match="'rename'"):
        new_paragraph_chars([{"doc_id": "a", "op": "rename", "version": 1}])
