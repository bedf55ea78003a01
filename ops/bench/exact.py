"""The exact ranking: every chunk of a corpus embedded in this process and searched by brute force.

Chunks are cut exactly as the indexer cuts them (:meth:`workers.indexing.Indexer.chunk`) and
embedded with the same model, so the only difference from the pipeline's vector search is the
approximate (HNSW) index. Vectors are kept on disk by (model, chunk content hash), in one file per
(model, corpus file) so a rerun embeds nothing; the content hashes make a stale file harmless.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from freshet.settings import Settings
from schemas.change import ChangeEvent
from workers.chunking import NO_CONTEXT, Chunk, Context, chunk_document
from workers.embedding import Embedder

Matrix = npt.NDArray[np.float32]
EMBED_BATCH = 256


@dataclass(frozen=True)
class ExactIndex:
    """One row per chunk of the corpus."""

    doc_ids: list[str]
    """The document of each row."""
    vectors: Matrix
    """Unit-length vectors, one row per chunk."""
    cached: int
    """Rows read from the disk cache rather than embedded now."""
    seconds: float
    """Time to chunk and embed (or load) the corpus."""


def chunk_corpus(events: Sequence[ChangeEvent], embedder: Embedder, *, min_chars: int,
                 context: Context = NO_CONTEXT) -> list[tuple[str, Chunk]]:
    """``(doc_id, chunk)`` for every chunk of every upsert, cut as the indexer cuts it."""
    return [(ev.doc_id, chunk)
            for ev in tqdm(events, desc="exact: chunking", unit="doc")
            for chunk in chunk_document(ev.content or "", content_type=ev.content_type,
                                        max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens,
                                        min_chars=min_chars, title=ev.title, context=context)]


def build_index(events: Sequence[ChangeEvent], embedder: Embedder, *, min_chars: int,
                cache: Path | None = None, chunks: Sequence[tuple[str, Chunk]] | None = None) -> ExactIndex:
    """Chunk (unless ``chunks`` are given) and embed the corpus; with ``cache``, reuse and extend the
    vectors stored there."""
    started = time.perf_counter()
    if chunks is None:
        chunks = chunk_corpus(events, embedder, min_chars=min_chars)
    known = _load(cache) if cache is not None else {}
    todo = list(dict.fromkeys(c.content_hash for _, c in chunks if c.content_hash not in known))
    texts = {c.content_hash: c.embed_text for _, c in chunks}
    fresh: dict[str, npt.NDArray[np.float32]] = {}
    with tqdm(total=len(todo), desc="exact: embedding", unit="chunk") as bar:
        for start in range(0, len(todo), EMBED_BATCH):
            part = todo[start : start + EMBED_BATCH]
            fresh.update(zip(part, np.asarray(embedder.embed([texts[h] for h in part]), dtype=np.float32),
                             strict=True))
            bar.update(len(part))
    if cache is not None and fresh:
        _save(cache, known | fresh)
    vectors = {**known, **fresh}
    dim = len(next(iter(vectors.values()))) if vectors else 0
    matrix = unit(np.stack([vectors[c.content_hash] for _, c in chunks])) if chunks else np.zeros((0, dim), np.float32)
    cached = sum(1 for _, c in chunks if c.content_hash in known)
    return ExactIndex([doc for doc, _ in chunks], matrix, cached, time.perf_counter() - started)


def index_corpus(settings: Settings, corpus: Path, events: Sequence[ChangeEvent],
                 embedder: Embedder) -> tuple[list[tuple[str, Chunk]], ExactIndex]:
    """The chunks of ``events`` (the documents of the BEIR directory ``corpus``), cut with the
    settings' context, and their index, with vectors cached under the settings' home as
    ``freshet eval`` caches them."""
    chunks = chunk_corpus(events, embedder, min_chars=settings.chunk_min_chars, context=settings.chunk_context)
    cache = cache_path(settings.home / "eval", embedder.model_id, corpus / "corpus.jsonl")
    return chunks, build_index(events, embedder, min_chars=settings.chunk_min_chars, cache=cache, chunks=chunks)


def top_chunks(queries: Matrix, vectors: Matrix, depth: int) -> list[list[tuple[int, float]]]:
    """For each query row, the ``depth`` rows of ``vectors`` of highest cosine, best first.

    Both matrices must hold unit-length rows, so cosine is the dot product. Equal scores are ordered by
    row index, so the result is deterministic.
    """
    if vectors.shape[0] == 0 or depth <= 0:
        return [[] for _ in range(queries.shape[0])]
    scores = queries @ vectors.T
    k = min(depth, vectors.shape[0])
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    out = []
    for row, cand in zip(scores, candidates, strict=True):
        order = cand[np.lexsort((cand, -row[cand]))]
        out.append([(int(i), float(row[i])) for i in order])
    return out


def exact_hits(index: ExactIndex, embedder: Embedder, queries: Mapping[str, str],
               depth: int) -> dict[str, list[tuple[str, float]]]:
    """Query id -> ``(doc_id, score)`` of its ``depth`` nearest chunks, best first."""
    qvecs = unit(np.asarray(embedder.embed(list(queries.values())), dtype=np.float32).reshape(len(queries), -1))
    found = top_chunks(qvecs, index.vectors, depth)
    return {qid: [(index.doc_ids[i], s) for i, s in hits] for qid, hits in zip(queries, found, strict=True)}


def unit(m: Matrix) -> Matrix:
    """Rows scaled to unit length (the model's already are; this keeps cosine right for any embedder)."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norms == 0, 1, norms)).astype(np.float32)


def cache_path(root: Path, model_id: str, corpus: Path) -> Path:
    """Where the vectors of ``corpus`` under ``model_id`` are kept: keyed by model, path, size and mtime."""
    st = corpus.stat()
    key = f"{model_id}\0{corpus.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return root / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _load(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            hashes, vectors = data["hashes"], data["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        return {}  # a torn or foreign file: embed again and overwrite it
    return {str(h): v for h, v in zip(hashes, vectors, strict=True)}


def _save(path: Path, vectors: Mapping[str, npt.NDArray[np.float32]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, hashes=np.array(list(vectors)), vectors=np.stack(list(vectors.values())))
    tmp.replace(path)
