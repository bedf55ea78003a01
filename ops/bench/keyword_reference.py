"""The reference BM25: the pipeline's keyword side computed outside Weaviate, with bm25s.

Every chunk the indexer would write (:func:`ops.bench.exact.chunk_corpus`) is tokenized exactly as
its BM25 property is (:func:`workers.analysis.keyword_text`: the document's title and the chunk's
text, lower-cased, without stop words, Snowball-stemmed) and scored by bm25s (Lucene's BM25, the
same k1 and b). ``freshet eval`` prints it beside ``keyword``, as the exact ranking beside
``vector``: a clear gap means Weaviate's keyword side scores something other than a standard BM25
over the same words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.change import ChangeEvent
from workers.analysis import keyword_text, tokens
from workers.chunking import Chunk
from workers.indexing import title_of


def bm25_index(chunks: Sequence[tuple[str, Chunk]], events: Sequence[ChangeEvent], *, k1: float, b: float) -> Any:
    """A bm25s index of ``chunks``, one row per chunk in order, over the words the indexer writes
    to the keyword property (the document's title and the chunk's text, analyzed)."""
    import bm25s

    by_doc: dict[str, list[Chunk]] = {}
    for doc, chunk in chunks:
        by_doc.setdefault(doc, []).append(chunk)
    titles = {ev.doc_id: title_of(ev, by_doc.get(ev.doc_id, [])) for ev in events}
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index([keyword_text(titles.get(doc), chunk.text).split() for doc, chunk in chunks], show_progress=False)
    return retriever


def bm25_hits(chunks: Sequence[tuple[str, Chunk]], events: Sequence[ChangeEvent], queries: Mapping[str, str], *,
              depth: int, k1: float, b: float) -> tuple[dict[str, list[tuple[str, float]]], float]:
    """Query id -> ``(doc_id, score)`` of its ``depth`` best-scoring chunks (score above 0), best
    first; and the seconds taken."""
    started = time.perf_counter()
    retriever = bm25_index(chunks, events, k1=k1, b=b)
    qids = list(queries)
    found, scores = retriever.retrieve([tokens(queries[q]) or [""] for q in qids], k=min(depth, len(chunks)),
                                       show_progress=False)
    out = {qid: [(chunks[int(i)][0], float(s)) for i, s in zip(found[row], scores[row], strict=True) if s > 0]
           for row, qid in enumerate(qids)}
    return out, time.perf_counter() - started
