"""``freshet eval DIR``: retrieval quality of the real pipeline on a BEIR dataset, beside the exact ranking.

Runs on a pipeline of its own (own topics, collection and consumer groups, own indexer and query
workers, on the running stack's Kafka and Weaviate): publishes the corpus as change events, waits
until every document is applied, sends every judged query over the request topic per search mode
(all of a mode in flight at once, top 100 chunks each) and ranks documents by their best chunk.
Beside it, the exact ranking: the same chunks and model in this process, cosine by brute force
over every chunk (:mod:`ops.bench.exact`), cut to the same 100 chunks; and the reference BM25
(:mod:`ops.bench.keyword_reference`: bm25s over the same chunks, analyzed as the keyword side). Metrics come from
:mod:`workers.relevance` (trec_eval). Vector mode should match the exact ranking up to HNSW's
approximation; a clear gap means the pipeline indexed something other than what it was given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, as_completed
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from statistics import fmean
from typing import Any

import click
from tqdm import tqdm

from freshet.client import SearchClient
from freshet.errors import FreshetError, TransientError
from freshet.publishing import publish_events
from freshet.settings import Settings
from ops.bench import exact
from ops.bench.keyword_reference import bm25_hits
from ops.stack import Stack, drop_pipeline, isolated
from schemas.change import ChangeEvent
from schemas.search import SearchReply
from workers.beir import Dataset, change_event, load_dataset
from workers.embedding import SentenceTransformerEmbedder
from workers.relevance import bootstrap_interval, evaluate, paired_interval, per_query, rank_documents
from workers.weaviate_store import client_for

MODES = ("vector", "keyword", "hybrid")
DEPTH = 100
"""Chunks asked of each search (the request's maximum), and of the exact ranking."""
REPLY_TIMEOUT = 300.0
SWEEP_FUSIONS = ("relative_score", "ranked")
SWEEP_ALPHAS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The grid of ``freshet eval --sweep`` (alpha 0 and 1 are keyword and vector alone)."""
Hits = dict[str, list[tuple[str, float]]]
"""Query id -> ``(doc_id, score)`` of each chunk found, best first."""


def search_all(settings: Settings, queries: Mapping[str, str], *, mode: str, alpha: float | None = None,
               fusion: str | None = None, top_k: int = DEPTH, timeout: float = REPLY_TIMEOUT,
               desc: str | None = None) -> tuple[Hits, float]:
    """Send every query at once over the request topic; return the hits of each and the wall seconds."""
    fields: dict[str, Any] = {"mode": mode, "top_k": top_k}
    if alpha is not None and mode == "hybrid":
        fields["alpha"] = alpha
    if fusion is not None and mode == "hybrid":
        fields["fusion"] = fusion
    client = SearchClient(settings.kafka_access, request_topic=settings.topic_requests,
                          reply_topic=settings.topic_replies, timeout=timeout)
    started = time.perf_counter()
    pending: dict[Future[SearchReply], str] = {}
    out: Hits = {}
    try:
        pending = {client.submit(text, **fields): qid for qid, text in queries.items()}
        for fut in tqdm(as_completed(pending, timeout=timeout), total=len(pending), desc=desc or f"{mode} queries",
                        unit="query", leave=desc is None):
            reply, qid = fut.result(), pending[fut]
            if reply.status != "ok":
                detail = f"{reply.error.code}: {reply.error.message}" if reply.error else reply.status
                raise FreshetError(f"{mode} search for query {qid!r} ({queries[qid]!r}) failed: {detail}")
            out[qid] = [(h.doc_id, h.score) for h in reply.hits]
    except FutureTimeout as exc:
        raise TransientError(f"{len(pending) - len(out)} {mode} searches unanswered after {timeout:.0f}s; "
                             f"see the query worker's log under {settings.home / 'logs'}") from exc
    finally:
        client.close()
    return out, time.perf_counter() - started


def stored_chunks(settings: Settings) -> int:
    """Objects in the pipeline's collection."""
    client = client_for(settings)
    try:
        return int(client.collections.use(settings.collection).aggregate.over_all(total_count=True).total_count or 0)
    finally:
        client.close()


def _rankings(hits: Hits) -> dict[str, list[str]]:
    return {qid: rank_documents(h) for qid, h in hits.items()}


def _exact(base: Settings, data: Dataset, events: Sequence[ChangeEvent]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The exact dense ranking's figures, and the reference BM25's over the same chunks."""
    embedder = SentenceTransformerEmbedder.for_settings(base)
    chunks, index = exact.index_corpus(base, data.path, events, embedder)
    started = time.perf_counter()
    hits = exact.exact_hits(index, embedder, data.queries, DEPTH)
    dense = {**_figures(data, hits)[0], "queries": len(data.queries), "docs": len(events),
             "chunks": len(index.doc_ids), "cached_chunks": index.cached, "seconds": round(index.seconds, 1),
             "search_seconds": round(time.perf_counter() - started, 2)}
    bm25, seconds = bm25_hits(chunks, events, data.queries, depth=DEPTH, k1=base.bm25_k1, b=base.bm25_b)
    keyword = {**_figures(data, bm25)[0], "queries": len(data.queries), "k1": base.bm25_k1,
               "b": base.bm25_b, "seconds": round(seconds, 2)}
    return dense, keyword


def _figures(data: Dataset, hits: Hits) -> tuple[dict[str, Any], dict[str, float]]:
    """The mean metrics with nDCG@10's 95 % bootstrap interval over queries, and nDCG@10 per query."""
    rankings = _rankings(hits)
    ndcg = per_query(data.qrels, rankings)
    return {**evaluate(data.qrels, rankings), "ndcg@10_ci": list(bootstrap_interval(list(ndcg.values())))}, ndcg


def sweep(settings: Settings, data: Dataset, singles: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """nDCG@10 of hybrid search for every fusion and alpha of the grid, each with its 95 % bootstrap
    interval and its paired interval against the better single mode (vector or keyword) of this set."""
    best = max(singles, key=lambda m: fmean(singles[m].values()))
    rows = []
    grid = [(f, a) for f in SWEEP_FUSIONS for a in SWEEP_ALPHAS]
    for fusion, alpha in tqdm(grid, desc="sweep: fusions x alphas", unit="setting"):
        hits, _ = search_all(settings, data.queries, mode="hybrid", alpha=alpha, fusion=fusion,
                             desc=f"  {fusion} {alpha:.1f}")
        figures, ndcg = _figures(data, hits)
        rows.append({"fusion": fusion, "alpha": alpha, "ndcg@10": figures["ndcg@10"],
                     "ndcg@10_ci": figures["ndcg@10_ci"], "vs": best,
                     "vs_diff": fmean(ndcg[q] - singles[best][q] for q in ndcg),
                     "vs_diff_ci": list(paired_interval(ndcg, singles[best]))})
    return rows


def _pipeline(base: Settings, data: Dataset, events: Sequence[ChangeEvent], modes: Sequence[str],
              alpha: float | None, keep: bool, do_sweep: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Index and search on a pipeline of its own; return each mode's figures (and the sweep's) and the
    indexing figures."""
    Stack(base).up(["kafka", "weaviate"])
    home = Path(tempfile.mkdtemp(prefix="freshet-eval-"))
    settings = isolated(base, f"eval-{uuid.uuid4().hex[:8]}", home)
    stack = Stack(settings)
    results: dict[str, Any] = {}
    try:
        stack.up(["indexer", "query"])
        started = time.perf_counter()
        publish_events(settings, events, wait=True, timeout=max(600.0, 0.5 * len(events)), desc="publishing corpus")
        indexing = {"chunks": stored_chunks(settings), "seconds": round(time.perf_counter() - started, 1)}
        per: dict[str, dict[str, float]] = {}
        for mode in (*modes, *(m for m in ("vector", "keyword") if do_sweep and m not in modes)):
            hits, seconds = search_all(settings, data.queries, mode=mode, alpha=alpha)
            figures, per[mode] = _figures(data, hits)
            results[mode] = {**figures, "queries": len(data.queries), "seconds": round(seconds, 2)}
            if mode == "hybrid":
                results[mode]["alpha"] = alpha if alpha is not None else settings.hybrid_alpha
                results[mode]["fusion"] = settings.hybrid_fusion
        if do_sweep:
            results["sweep"] = sweep(settings, data, {m: per[m] for m in ("vector", "keyword")})
    finally:
        stack.down(["indexer", "query"])
        if keep:
            click.echo(f"kept collection {settings.collection} and topics {settings.consumer_group_prefix}.* "
                       f"(worker state and logs under {home})", err=True)
        else:
            drop_pipeline(settings)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return results, indexing


def run(base: Settings, path: Path, *, modes: Sequence[str] = MODES, alpha: float | None = None,
        limit_queries: int | None = None, keep: bool = False, do_sweep: bool = False) -> dict[str, Any]:
    """Run the evaluation; return ``{"modes": {mode: figures}, "exact": figures, "bm25": figures}``
    (and ``"sweep": [rows]`` with ``do_sweep``)."""
    data = load_dataset(path, limit_queries=limit_queries)
    events = [change_event(p) for p in data.corpus]
    exact_figures, bm25_figures = _exact(base, data, events)
    modes_figures, indexing = _pipeline(base, data, events, modes, alpha, keep, do_sweep)
    exact_figures |= {"pipeline_chunks": indexing["chunks"], "pipeline_index_seconds": indexing["seconds"]}
    out = {"modes": modes_figures, "exact": exact_figures, "bm25": bm25_figures}
    if "sweep" in modes_figures:
        out["sweep"] = modes_figures.pop("sweep")
    return out


def print_report(path: Path, r: dict[str, Any]) -> None:
    e = r["exact"]
    click.secho(f"\nfreshet eval {path}: {e['docs']:,} documents, {e['queries']} judged queries, "
                f"top {DEPTH} chunks per search, documents ranked by their best chunk", bold=True)
    click.echo(f"  pipeline: {e['pipeline_chunks']:,} chunks in the collection, indexed in "
               f"{e['pipeline_index_seconds']:.0f} s (first publish to last document applied)")
    click.echo(f"  exact:    {e['chunks']:,} chunks chunked and embedded in {e['seconds']:.0f} s "
               f"({e['cached_chunks']:,} from the cache), brute-force search {e['search_seconds']:.2f} s")
    if e["chunks"] != e["pipeline_chunks"]:
        click.secho("  the pipeline indexed a different number of chunks than the exact chunking made", fg="red")
    click.echo(f"\n  {'mode':<30} {'nDCG@10':>8} {'Recall@100':>11} {'MRR@10':>8} {'queries in':>11}  "
               f"nDCG@10 95 % interval")
    rows = [(f"{m} ({f['fusion']}, alpha {f['alpha']})" if "alpha" in f else m, f, f"{f['seconds']:.1f} s")
            for m, f in r["modes"].items()]
    rows.append(("exact (brute force)", e, ""))
    if "bm25" in r:
        rows.append((f"BM25 (bm25s {r['bm25']['k1']}/{r['bm25']['b']})", r["bm25"], f"{r['bm25']['seconds']:.1f} s"))
    for label, f, seconds in rows:
        ci = f.get("ndcg@10_ci")
        interval = f"  [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        click.echo(f"  {label:<30} {f['ndcg@10']:>8.4f} {f['recall@100']:>11.4f} {f['mrr@10']:>8.4f} {seconds:>11}"
                   f"{interval}")
    if r.get("sweep"):
        vs = r["sweep"][0]["vs"]
        click.secho(f"\n  sweep: hybrid nDCG@10 [95 % bootstrap interval over queries]; minus {vs} (the better single "
                    f"mode here), paired interval", bold=True)
        click.echo(f"  {'fusion':<15} {'alpha':>5} {'nDCG@10':>8} {'interval':>17} {'- ' + vs:>10} {'interval':>18}")
        for s in r["sweep"]:
            lo, hi = s["ndcg@10_ci"]
            dlo, dhi = s["vs_diff_ci"]
            click.echo(f"  {s['fusion']:<15} {s['alpha']:>5.1f} {s['ndcg@10']:>8.4f} [{lo:.3f}, {hi:.3f}]  "
                       f"{s['vs_diff']:>+9.4f} [{dlo:+.3f}, {dhi:+.3f}]")


def main(base: Settings, path: Path, *, modes: Sequence[str], alpha: float | None, limit_queries: int | None,
         as_json: bool, keep: bool, do_sweep: bool = False) -> int:
    report = run(base, path, modes=modes, alpha=alpha, limit_queries=limit_queries, keep=keep, do_sweep=do_sweep)
    if as_json:
        click.echo(json.dumps(report))
    else:
        print_report(path, report)
    return 0
