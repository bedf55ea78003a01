"""``freshet bench fusion DIR...``: how far any fusion of the two rankings can take hybrid search.

Offline, without the stack: for each BEIR dataset, the exact dense ranking (every chunk embedded
here, :mod:`ops.bench.exact`) and the reference BM25 (:mod:`ops.bench.keyword_reference`'s
analyzer and scoring) stand in for the pipeline's vector and keyword sides (``freshet eval`` shows
each within 0.005 of them). Each side's scores are kept for every chunk, so fusions that need a
side's score of a chunk the other side found can be tried too. Every family below is run over an
alpha grid, with the query worker's candidate depth per side, and each figure is printed with its
95 % bootstrap interval and its paired interval against the better single mode of its set:

- ``relative_score`` and ``ranked``: the query worker's fusions (:func:`workers.fusion.fuse`);
- ``distribution``: each side normalized by its candidates' mean +- 3 standard deviations
  (distribution-based score fusion), then the convex combination;
- ``relative_filled``: min-max over the union of both sides' candidates, each candidate scored
  by both sides (no side counts 0 for a chunk it did not return);
- ``vector_rerank``: the vector side's candidates only, re-scored by min-max of both sides.

It answers, in a minute, the question the pipeline's ``freshet eval --sweep`` answers in half an
hour for the two shipped fusions: is there a setting that is not below the better single mode on
any set and at least ``--margin`` above it on their average.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, pstdev
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from freshet.settings import Settings
from ops.bench import exact
from ops.bench.keyword_reference import bm25_index
from workers.analysis import tokens
from workers.beir import Qrels, change_event, load_dataset
from workers.embedding import SentenceTransformerEmbedder
from workers.fusion import Candidate, fuse, normalized
from workers.relevance import bootstrap_interval, paired_interval, per_query, rank_documents

FAMILIES = ("relative_score", "ranked", "distribution", "relative_filled", "vector_rerank")
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEPTH = 100
"""Chunks ranked per query (the request's maximum), as in ``freshet eval``."""
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Prepared:
    """One dataset: each side's score of every chunk for every judged query."""

    name: str
    qids: list[str]
    doc_ids: list[str]
    dense: Scores
    """Cosine, one row per query, one column per chunk."""
    bm25: Scores
    """BM25 (0 where no query word occurs), same shape."""
    qrels: Qrels


def prepare(base: Settings, path: Path, embedder: SentenceTransformerEmbedder) -> Prepared:
    """Chunk and embed (vectors cached as ``freshet eval`` caches them) and score both sides."""
    data = load_dataset(path)
    events = [change_event(p) for p in data.corpus]
    chunks, index = exact.index_corpus(base, path, events, embedder)
    qids = list(data.queries)
    queries = np.asarray(embedder.embed([data.queries[q] for q in qids]), dtype=np.float32).reshape(len(qids), -1)
    dense = (exact.unit(queries) @ index.vectors.T).astype(np.float32)
    retriever = bm25_index(chunks, events, k1=base.bm25_k1, b=base.bm25_b)
    bm25 = np.stack([np.asarray(retriever.get_scores(tokens(data.queries[q]) or [""]), dtype=np.float32)
                     for q in qids]) if qids else np.zeros((0, len(chunks)), np.float32)
    return Prepared(path.name, qids, index.doc_ids, dense, bm25, data.qrels)


def top(row: Scores, depth: int, *, positive: bool = False) -> list[int]:
    """Column indexes of the ``depth`` highest scores of ``row``, best first (ties by index); with
    ``positive``, only scores above 0 (a BM25 side returns no chunk without a query word)."""
    k = min(depth, row.shape[0])
    if k <= 0:
        return []
    idx = np.argpartition(-row, k - 1)[:k]
    order = idx[np.lexsort((idx, -row[idx]))]
    return [int(i) for i in order if not positive or row[i] > 0]


def three_sigma(values: Sequence[float]) -> list[float]:
    """Distribution-based normalization: mean - 3 sd -> 0, mean + 3 sd -> 1, clipped."""
    if not values:
        return []
    mean, sd = fmean(values), pstdev(values)
    if sd <= 1e-12:
        return [1.0] * len(values)
    return [min(1.0, max(0.0, (v - mean + 3 * sd) / (6 * sd))) for v in values]


def _convex(alpha: float, v: dict[int, float], k: dict[int, float]) -> dict[int, float]:
    return {i: alpha * v.get(i, 0.0) + (1 - alpha) * k.get(i, 0.0) for i in dict.fromkeys([*v, *k])}


def fused(family: str, alpha: float, dense: Scores, bm25: Scores, candidates: int) -> list[tuple[int, float]]:
    """One query's fused chunks ``(column, score)``, best first (ties by vector score, then column)."""
    vc, kc = top(dense, candidates), top(bm25, candidates, positive=True)
    if family in ("relative_score", "ranked"):
        hits = fuse([Candidate(str(i), float(dense[i])) for i in vc], [Candidate(str(i), float(bm25[i])) for i in kc],
                    alpha=alpha, fusion=family, limit=DEPTH)
        return [(int(h.id), h.score) for h in hits]
    if family == "distribution":
        scores = _convex(alpha, dict(zip(vc, three_sigma([float(dense[i]) for i in vc]), strict=True)),
                         dict(zip(kc, three_sigma([float(bm25[i]) for i in kc]), strict=True)))
    elif family in ("relative_filled", "vector_rerank"):
        pool = vc if family == "vector_rerank" else list(dict.fromkeys([*vc, *kc]))
        scores = _convex(alpha, dict(zip(pool, normalized([float(dense[i]) for i in pool]), strict=True)),
                         dict(zip(pool, normalized([float(bm25[i]) for i in pool]), strict=True)))
    else:
        raise ValueError(f"unknown fusion family {family!r}; one of {', '.join(FAMILIES)}")
    return sorted(scores.items(), key=lambda kv: (-kv[1], -float(dense[kv[0]]), kv[0]))[:DEPTH]


def ndcg(p: Prepared, hits: Sequence[Sequence[tuple[int, float]]]) -> dict[str, float]:
    """nDCG@10 per query of documents ranked by their best chunk (``hits``: one list per query row)."""
    rankings = {q: rank_documents((p.doc_ids[i], s) for i, s in row) for q, row in zip(p.qids, hits, strict=True)}
    return per_query(p.qrels, rankings)


def single(p: Prepared, side: str) -> list[list[tuple[int, float]]]:
    """One side alone: its ``DEPTH`` best chunks per query."""
    scores = p.dense if side == "vector" else p.bm25
    return [[(i, float(row[i])) for i in top(row, DEPTH, positive=side == "keyword")] for row in scores]


def study(sets: Sequence[Prepared], *, candidates: int, families: Sequence[str] = FAMILIES,
          alphas: Sequence[float] = ALPHAS) -> dict[str, Any]:
    """The single modes of each set and one row per (family, alpha): nDCG@10 of each set with its
    interval and its paired difference from that set's better single mode, and their averages."""
    singles: dict[str, dict[str, dict[str, float]]] = {}
    for p in sets:
        singles[p.name] = {side: ndcg(p, single(p, side)) for side in ("vector", "keyword")}
    best = {name: max(modes, key=lambda m: fmean(modes[m].values())) for name, modes in singles.items()}
    out: dict[str, Any] = {"candidates": candidates, "singles": {
        name: {m: {"ndcg@10": fmean(v.values()), "ndcg@10_ci": list(bootstrap_interval(list(v.values())))}
               for m, v in modes.items()} | {"better": best[name]} for name, modes in singles.items()}, "rows": []}
    for family in families:
        for alpha in alphas:
            row: dict[str, Any] = {"fusion": family, "alpha": alpha, "sets": {}}
            for p in sets:
                got = ndcg(p, [fused(family, alpha, d, k, candidates) for d, k in zip(p.dense, p.bm25, strict=True)])
                ref = singles[p.name][best[p.name]]
                row["sets"][p.name] = {"ndcg@10": fmean(got.values()),
                                       "ndcg@10_ci": list(bootstrap_interval(list(got.values()))),
                                       "vs_better": fmean(got[q] - ref[q] for q in got),
                                       "vs_better_ci": list(paired_interval(got, ref))}
            row["average"] = fmean(s["ndcg@10"] for s in row["sets"].values())
            row["average_vs_better"] = fmean(s["vs_better"] for s in row["sets"].values())
            out["rows"].append(row)
    return out


def meets(row: dict[str, Any], margin: float) -> bool:
    """Not below the better single mode on any set and at least ``margin`` above it on average."""
    return all(s["vs_better"] >= 0 for s in row["sets"].values()) and row["average_vs_better"] >= margin


def print_report(result: dict[str, Any], margin: float) -> None:
    names = list(result["singles"])
    click.echo(f"fusion study: exact dense + reference BM25, {result['candidates']} candidates per side, "
               "nDCG@10 [95% bootstrap]")
    for name, s in result["singles"].items():
        click.echo(f"  {name}: vector {s['vector']['ndcg@10']:.4f} [{s['vector']['ndcg@10_ci'][0]:.3f}, "
                   f"{s['vector']['ndcg@10_ci'][1]:.3f}], keyword {s['keyword']['ndcg@10']:.4f} "
                   f"[{s['keyword']['ndcg@10_ci'][0]:.3f}, {s['keyword']['ndcg@10_ci'][1]:.3f}]; better: {s['better']}")
    head = "  ".join(f"{n:<36}" for n in names)
    click.echo(f"\n{'fusion':<16}{'alpha':>6}  {head}  avg vs better")
    for row in result["rows"]:
        cells = "  ".join(
            f"{s['ndcg@10']:.4f} ({s['vs_better']:+.4f} [{s['vs_better_ci'][0]:+.3f},"
            f"{s['vs_better_ci'][1]:+.3f}])".ljust(36) for s in (row["sets"][n] for n in names))
        click.echo(f"{row['fusion']:<16}{row['alpha']:>6.1f}  {cells}  {row['average_vs_better']:+.4f}"
                   f"{'  meets' if meets(row, margin) else ''}")
    good = [r for r in result["rows"] if meets(r, margin)]
    best = max(result["rows"], key=lambda r: r["average_vs_better"]) if result["rows"] else None
    click.echo(f"\nsettings not below the better single mode on any set and >= {margin:+.3f} above it on average: "
               f"{len(good)} of {len(result['rows'])}"
               + (f"; best average: {best['fusion']} {best['alpha']:.1f} ({best['average_vs_better']:+.4f})"
                  if best else ""))


@click.command("fusion")
@click.argument("directories", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--candidates", default=None, type=click.IntRange(1, 1000),
              help="Candidates per side (default: FRESHET_HYBRID_CANDIDATES).")
@click.option("--margin", default=0.01, show_default=True, type=float,
              help="Average gain over the better single mode a setting must reach.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def fusion_command(settings: Settings | None, directories: tuple[Path, ...], candidates: int | None, margin: float,
                   as_json: bool) -> None:
    """Every fusion of the exact dense ranking and the reference BM25 over an alpha grid (offline)."""
    base = settings or Settings()
    embedder = SentenceTransformerEmbedder.for_settings(base)
    sets = [prepare(base, d, embedder) for d in directories]
    result = study(sets, candidates=candidates or base.hybrid_candidates)
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        click.echo()
    else:
        print_report(result, margin)
