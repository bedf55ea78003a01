"""From chunk hits to document rankings, and from rankings to retrieval metrics (pure).

The metrics are trec_eval's, through ``pytrec_eval`` (the package ``pytrec-eval-terrier``), as
BEIR computes them: nDCG@10 on the graded judgements, Recall@100 and MRR@10 counting a document
relevant when its grade is at least 1. The mean over queries, each query's figure, and bootstrap
intervals over queries (resampled with replacement) are computed here.

Traps: trec_eval orders a run by score and breaks ties by document id, not by the order given, so
:func:`as_run` turns a ranking into strictly decreasing scores; and a query missing from a run is
silently left out of the mean, so :func:`evaluate` gives every judged query a run, empty if need be.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from math import fsum
from statistics import fmean

import pytrec_eval

from workers.beir import Qrels

#: Metric name -> (trec_eval measure, its key in the results, cut-off of the ranking handed over).
#: trec_eval's ``recip_rank`` has no cut-off of its own: MRR@10 is computed on the top 10.
METRICS: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "recall@100": ("recall.100", "recall_100", None),
    "mrr@10": ("recip_rank", "recip_rank", 10),
}
#: What the query worker's golden-set probe reports.
PROBE_METRICS: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "recall@10": ("recall.10", "recall_10", None),
}


def rank_documents(hits: Iterable[tuple[str, float]]) -> list[str]:
    """Document ids by their best chunk: a document scores the highest score among its hits.

    ``hits`` are ``(doc_id, score)`` pairs, best first; equal scores keep the order of first sight.
    """
    best: dict[str, float] = {}
    for doc_id, score in hits:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    return sorted(best, key=lambda d: -best[d])


def as_run(ranking: Sequence[str]) -> dict[str, float]:
    """A ranking as trec_eval scores: ``n, n-1, ..., 1`` so that trec_eval keeps exactly this order."""
    return {doc_id: float(len(ranking) - i) for i, doc_id in enumerate(ranking)}


def per_query(qrels: Qrels, rankings: Mapping[str, Sequence[str]], metric: str = "ndcg@10") -> dict[str, float]:
    """``metric`` of each query of ``qrels`` (no ranking counts as zero)."""
    measure, key, cut = METRICS[metric]
    run = {qid: as_run(list(rankings.get(qid, ()))[:cut]) for qid in qrels}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)
    return {qid: float(scores[qid][key]) for qid in qrels}


def evaluate(qrels: Qrels, rankings: Mapping[str, Sequence[str]],
             metrics: Mapping[str, tuple[str, str, int | None]] = METRICS) -> dict[str, float]:
    """Mean of each of ``metrics`` over every query of ``qrels`` (no ranking counts as zero)."""
    out: dict[str, float] = {}
    for name, (measure, key, cut) in metrics.items():
        run = {qid: as_run(list(rankings.get(qid, ()))[:cut]) for qid in qrels}
        scores = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)
        out[name] = fmean(float(scores[qid][key]) for qid in qrels)
    return out


def bootstrap_interval(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000,
                       seed: int = 20261205) -> tuple[float, float]:
    """The ``level`` percentile interval of the mean of ``values`` (one per query), resampling the
    queries with replacement ``resamples`` times; seeded, so a rerun prints the same interval."""
    if not values:
        return (0.0, 0.0)
    rnd = random.Random(seed)
    n = len(values)
    means = sorted(fsum(values[rnd.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2
    return means[int(tail * (resamples - 1))], means[int(round((1.0 - tail) * (resamples - 1)))]


def paired_interval(a: Mapping[str, float], b: Mapping[str, float], *, level: float = 0.95, resamples: int = 2000,
                    seed: int = 20261205) -> tuple[float, float]:
    """The bootstrap interval of the mean per-query difference ``a - b`` (same queries resampled for
    both: the interval of "a is better than b", tighter than comparing two separate intervals)."""
    return bootstrap_interval([a[q] - b[q] for q in sorted(a) if q in b], level=level, resamples=resamples, seed=seed)
