"""Hybrid fusion: one ranking, with a readable score, from a vector ranking and a keyword ranking.

Pure functions. Each side arrives as its own candidates, best first, with its raw score (cosine
similarity for the vector side, BM25 for the keyword side). Two fusions:

- ``relative_score``: each side's scores min-max normalized over its own candidates (the best 1,
  the worst 0; one candidate, or all equal: 1), then ``alpha * vector + (1 - alpha) * keyword``,
  a side that did not find the chunk counting 0. The fused score is in [0, 1].
- ``ranked``: reciprocal-rank fusion, ``alpha / (k + rank_v) + (1 - alpha) / (k + rank_k)`` (ranks
  from 1, k = 60, a missing side adds 0), divided by its largest possible value ``1 / (k + 1)`` so
  that it too is in [0, 1]: a chunk first on both sides scores 1.

Ties are broken by the vector side's score, then the keyword side's, then the id, so the order is
the same on every run. Every fused hit keeps both raw scores (None for the side that missed it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The fusions a request or the settings may name.
FUSIONS = ("relative_score", "ranked")
#: The k of reciprocal-rank fusion (the usual 60, as in Weaviate's ranked fusion).
RRF_K = 60


@dataclass(frozen=True, slots=True)
class Candidate:
    """One chunk as one side found it: its id and raw score, best first in its list."""

    id: str
    score: float


@dataclass(frozen=True, slots=True)
class Fused:
    """One chunk of the fused ranking."""

    id: str
    score: float
    """In [0, 1]; orders the hits."""
    vector_score: float | None
    keyword_score: float | None


def normalized(scores: Sequence[float]) -> list[float]:
    """Min-max normalization: the largest 1, the smallest 0; all equal (or one): all 1."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def fuse(vector: Sequence[Candidate], keyword: Sequence[Candidate], *, alpha: float, fusion: str,
         limit: int) -> list[Fused]:
    """The best ``limit`` chunks of both sides fused (see the module)."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; one of {', '.join(FUSIONS)}")
    raw_v = {c.id: c.score for c in vector}
    raw_k = {c.id: c.score for c in keyword}
    if fusion == "relative_score":
        part_v = dict(zip(raw_v, normalized(list(raw_v.values())), strict=True))
        part_k = dict(zip(raw_k, normalized(list(raw_k.values())), strict=True))
        scale = 1.0
    else:
        part_v = {cid: 1.0 / (RRF_K + rank) for rank, cid in enumerate(raw_v, start=1)}
        part_k = {cid: 1.0 / (RRF_K + rank) for rank, cid in enumerate(raw_k, start=1)}
        scale = float(RRF_K + 1)
    ids = list(dict.fromkeys([*raw_v, *raw_k]))
    fused = [Fused(id=cid,
                   score=min(1.0, scale * (alpha * part_v.get(cid, 0.0) + (1.0 - alpha) * part_k.get(cid, 0.0))),
                   vector_score=raw_v.get(cid), keyword_score=raw_k.get(cid))
             for cid in ids]
    fused.sort(key=lambda f: (-f.score, -(f.vector_score if f.vector_score is not None else -2.0),
                              -(f.keyword_score if f.keyword_score is not None else -2.0), f.id))
    return fused[:limit]
