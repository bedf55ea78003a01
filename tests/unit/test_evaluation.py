"""freshet eval's pure parts: BEIR files, ranking documents by their best chunk, trec_eval metrics,
and the brute-force exact search (with the test embedder)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from freshet.errors import FreshetError
from ops.bench.exact import build_index, cache_path, exact_hits, top_chunks
from tests.unit.fakes import WordEmbedder
from workers.beir import Passage, change_event, load_dataset, read_qrels
from workers.relevance import as_run, evaluate, rank_documents


def write_beir(root: Path, corpus: list[dict[str, str]], queries: list[dict[str, str]],
               qrels: list[tuple[str, str, int]], *, headers: int = 1) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = ["query-id\tcorpus-id\tscore"] * headers + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


# --- BEIR files --------------------------------------------------------------------------------
def test_only_judged_queries_are_kept_and_a_repeated_header_is_skipped(tmp_path: Path) -> None:
    path = write_beir(tmp_path, [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "text": "two"}],
                      [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "unjudged"}, {"_id": "q3", "text": "x"}],
                      [("q1", "d1", 2), ("q1", "d2", 0), ("q3", "d2", 1)], headers=2)
    data = load_dataset(path)
    assert data.queries == {"q1": "first", "q3": "x"}
    assert data.qrels == {"q1": {"d1": 2, "d2": 0}, "q3": {"d2": 1}}
    assert data.corpus == [Passage("d1", "T", "one"), Passage("d2", "", "two")]
    assert load_dataset(path, limit_queries=1).qrels == {"q1": {"d1": 2, "d2": 0}}


def test_a_bad_qrels_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(FreshetError, match=r"test.tsv:2: expected"):
        read_qrels(tmp_path / "test.tsv")


def test_no_judged_query_is_an_error(tmp_path: Path) -> None:
    path = write_beir(tmp_path, [{"_id": "d1", "text": "one"}], [{"_id": "q1", "text": "x"}], [("q9", "d1", 1)])
    with pytest.raises(FreshetError, match="no query"):
        load_dataset(path)


def test_a_passage_becomes_a_plain_text_upsert_with_its_title() -> None:
    ev = change_event(Passage("<dbpedia:Oslo>", "Oslo", "Oslo is the capital of Norway."))
    assert (ev.doc_id, ev.op, ev.version, ev.content, ev.title, ev.content_type) == (
        "<dbpedia:Oslo>", "upsert", 1, "Oslo is the capital of Norway.", "Oslo", "text/plain")
    assert change_event(Passage("d", "", "text")).title is None


# --- ranking and metrics ---------------------------------------------------------------------
def test_a_document_ranks_by_its_best_chunk() -> None:
    hits = [("a", 0.9), ("b", 0.8), ("a", 0.7), ("c", 0.8), ("b", 0.95)]
    assert rank_documents(hits) == ["b", "a", "c"]


def test_equal_scores_keep_the_order_of_first_sight() -> None:
    assert rank_documents([("z", 0.5), ("a", 0.5), ("m", 0.5)]) == ["z", "a", "m"]


def test_a_run_keeps_the_ranking_order_for_trec_eval() -> None:
    run = as_run(["z", "a", "m"])
    assert sorted(run, key=lambda d: -run[d]) == ["z", "a", "m"]
    assert as_run([]) == {}


def test_metrics_match_hand_computed_values() -> None:
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d9": 1}}
    # q1: d3 (not relevant), d1 (gain 2), d2 (gain 1); q2: nothing found.
    got = evaluate(qrels, {"q1": ["d3", "d1", "d2"]})
    dcg = 2 / math.log2(3) + 1 / math.log2(4)  # trec_eval's nDCG: the grade itself is the gain
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx((dcg / idcg + 0.0) / 2, abs=1e-4)
    assert got["recall@100"] == pytest.approx((1.0 + 0.0) / 2)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 0.0) / 2)


def test_mrr_counts_only_the_top_ten() -> None:
    ranking = [f"x{i}" for i in range(10)] + ["rel"]
    got = evaluate({"q": {"rel": 1}}, {"q": ranking})
    assert got["mrr@10"] == 0.0
    assert got["recall@100"] == 1.0


def test_ties_do_not_reorder_a_ranking() -> None:
    # trec_eval would sort equal scores by document id; the ranking's own order must hold.
    hits = [("b", 1.0), ("a", 1.0)]
    assert evaluate({"q": {"b": 1}}, {"q": rank_documents(hits)})["mrr@10"] == 1.0


# --- exact search ------------------------------------------------------------------------------
def test_top_chunks_is_the_exact_cosine_order() -> None:
    vectors = np.array([[1, 0], [0.6, 0.8], [0, 1], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[0, 1], [1, 0]], dtype=np.float32)
    got = top_chunks(queries, vectors, 3)
    assert [i for i, _ in got[0]] == [2, 1, 3]  # equal scores: lower row first
    assert [i for i, _ in got[1]] == [0, 1, 3]
    assert got[0][0][1] == pytest.approx(1.0)
    assert top_chunks(queries, vectors, 10)[0][-1][0] == 0
    assert top_chunks(queries, np.zeros((0, 2), np.float32), 5) == [[], []]


def test_exact_index_chunks_as_the_indexer_does_and_reuses_its_cache(tmp_path: Path) -> None:
    long = " ".join(f"Sentence {i} is here." for i in range(40))  # over WordEmbedder's 60 tokens
    events = [change_event(Passage("d1", "", long)), change_event(Passage("d2", "", "Short text about otters."))]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("x")
    cache = cache_path(tmp_path / "cache", "test-model", corpus)
    first = build_index(events, WordEmbedder(), min_chars=100, cache=cache)
    assert first.doc_ids.count("d1") > 1 and first.doc_ids.count("d2") == 1
    assert first.cached == 0 and cache.exists()
    again = WordEmbedder()
    second = build_index(events, again, min_chars=100, cache=cache)
    assert again.embedded == [] and second.cached == len(first.doc_ids)
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_exact_hits_name_documents() -> None:
    events = [change_event(Passage("a", "", "alpha beta")), change_event(Passage("b", "", "gamma delta epsilon"))]
    embedder = WordEmbedder()
    index = build_index(events, embedder, min_chars=0)
    hits = exact_hits(index, embedder, {"q": "alpha beta"}, depth=5)
    assert [d for d, _ in hits["q"]][0] == "a"
