"""The keyword side's analyzer (workers.analysis): the words BM25 indexes and searches."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import Stemmer

from tests.integration.test_weaviate_store import record
from workers.analysis import analyzed, analyzed_query, keyword_text, tokens
from workers.weaviate_store import KEYWORDS, WeaviateChunkStore

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_words_are_lower_cased_stemmed_and_stop_words_dropped() -> None:
    assert tokens("The Indexing of the indexed INDEXES") == ["index", "index", "index"]
    assert tokens("Is it a cat? It is!") == ["cat"]
    assert tokens("a I x") == []  # one-letter words are no words
    assert analyzed("Kafka's offsets, re-indexed in 2024") == "kafka offset re index 2024"
    assert analyzed_query("Running searches") == "run search"


def test_the_analyzer_is_bm25s_tokenizer_with_the_english_stemmer() -> None:
    texts = ["Crème brûlée — déjà vu; naïve cafés", "東京 データ and 3.14 or v2_beta", "e-mail: x@y.org!"]
    corpus = SHARED / "dbpedia-5k" / "corpus.jsonl"
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for _, line in zip(range(200), fh, strict=False)]
    theirs = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                            show_progress=False)
    assert [tokens(t) for t in texts] == [list(t) for t in theirs]


def test_a_chunk_is_searched_by_its_title_and_text() -> None:
    assert keyword_text("Sea Otters", "They use rocks.") == "sea otter use rock"
    assert keyword_text(None, "They use rocks.") == "use rock"
    store = WeaviateChunkStore(host="127.0.0.1", http_port=1, grpc_port=2, collection="C")
    rec = record("otters.md", 0, "Otters crack shellfish open with stones", [1.0] + [0.0] * 383)
    assert store._properties(rec)[KEYWORDS] == keyword_text(rec.title, rec.text)
