"""``freshet bench query``: request-reply latency over Kafka, beside the same searches made directly.

Indexes the first ``--docs`` passages of a BEIR dataset through a pipeline of its own (own topics,
collection and consumer groups, own indexer and query workers, on the running stack's Kafka and
Weaviate), then, per search mode, runs the dataset's queries (cycled) two ways:

* **kafka**: :class:`freshet.client.SearchClient` to the bench's query worker and back;
* **direct**: the query worker's own search made from this process: the same model in-process
  (embedding time included, one model thread as in the worker) and the same weaviate-client v4
  query as :meth:`workers.weaviate_store.WeaviateChunkStore.search`, asking for as many hits as
  the worker does (:func:`workers.search.fetch_limit`) and keeping the first ``top_k``.

The bench's query worker runs with its query-vector cache off (``query_cache_size=0``): the
queries repeat, and a cached vector would compare a dictionary lookup with a model call.

Each way is measured open-loop at a fixed request rate (latency counted from the scheduled send
time, so a late sender cannot hide queueing) and closed-loop with N client threads; a phase of one
way never overlaps one of the other. Traps: everything shares this machine's CPUs, so figures
compare only within one run (each phase records the load average after it); and a rate above what
the worker can serve measures its growing backlog, not the round trip (the report says so).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from freshet.errors import FreshetError
from freshet.settings import Settings
from ops.bench import SHARED_DATASETS
from ops.bench.load import REPLY_TIMEOUT, Outcome, T, closed_loop, open_loop, summarize
from schemas.search import DEFAULT_ALPHA

if TYPE_CHECKING:
    from freshet.client import SearchClient
    from schemas.change import ChangeEvent
    from schemas.search import SearchReply

DEFAULT_DATASET = SHARED_DATASETS / "msmarco-5k"


@dataclass(frozen=True, slots=True)
class Params:
    """The request fields every search of a mode's phases carries."""

    mode: str
    top_k: int
    alpha: float
    fetch: int
    """Hits asked of Weaviate: the worker over-fetches (:func:`workers.search.fetch_limit`)."""


@dataclass(frozen=True, slots=True)
class DirectResult:
    """What one direct search measured, and the chunks it found, best first."""

    embed_ms: float
    search_ms: float
    chunk_ids: tuple[str, ...]


class DirectSearcher:
    """The query worker's search made from this process (as :meth:`WeaviateChunkStore.search` does it).

    One synchronous client serves every thread (its gRPC channel is thread-safe); embedding goes
    through one lock, as the worker runs its model in one thread, so its wait counts as embed time
    in both ways. The model loads lazily, on the first search (the warm-up).
    """

    def __init__(self, settings: Settings) -> None:
        from workers.embedding import SentenceTransformerEmbedder
        from workers.weaviate_store import client_for

        self._embedder = SentenceTransformerEmbedder.for_settings(settings)
        self._client = client_for(settings)
        self._collection = self._client.collections.use(settings.collection)
        self._model_lock = threading.Lock()
        self._settings = settings

    def search(self, text: str, p: Params) -> DirectResult:
        import weaviate.classes as wvc

        from workers.analysis import analyzed_query
        from workers.fusion import Candidate, fuse
        from workers.weaviate_store import KEYWORDS, VECTOR_NAME, bm25_operator

        s = self._settings
        t0 = time.perf_counter()
        vector: list[float] | None = None
        if p.mode != "keyword":
            with self._model_lock:
                vector = self._embedder.embed([text])[0]
        words = analyzed_query(text)
        t1 = time.perf_counter()
        q = self._collection.query

        def keyword(limit: int) -> list[Any]:
            return list(q.bm25(words, query_properties=[KEYWORDS], operator=bm25_operator(s.keyword_operator),
                               limit=limit, return_metadata=wvc.query.MetadataQuery(score=True)).objects)

        def dense(limit: int) -> list[Any]:
            return list(q.near_vector(vector or [], target_vector=VECTOR_NAME, limit=limit,
                                      return_metadata=wvc.query.MetadataQuery(distance=True)).objects)

        if p.mode == "keyword":
            found = [str(o.uuid) for o in keyword(p.fetch)]
        elif p.mode == "vector" or not words:
            found = [str(o.uuid) for o in dense(p.fetch)]
        else:  # as the query worker's store does it (WeaviateChunkStore._hybrid)
            depth = max(p.fetch, s.hybrid_candidates)
            found = [f.id for f in fuse([Candidate(str(o.uuid), 1.0 - float(o.metadata.distance or 0.0))
                                         for o in dense(depth)],
                                        [Candidate(str(o.uuid), float(o.metadata.score or 0.0))
                                         for o in keyword(depth)],
                                        alpha=p.alpha, fusion=s.hybrid_fusion, limit=p.fetch)]
        ids = tuple(found[:p.top_k])
        t2 = time.perf_counter()
        return DirectResult((t1 - t0) * 1e3, (t2 - t1) * 1e3, ids)

    def close(self) -> None:
        self._client.close()


def _replies_ok(outcomes: list[Outcome[SearchReply]]) -> list[Outcome[SearchReply]]:
    """A reply other than ``ok`` is an error outcome."""
    return [o if o.value is None or o.value.status == "ok" else
            Outcome(o.latency_ms, error=f"reply {o.value.status}: {o.value.error.message if o.value.error else ''}")
            for o in outcomes]


def _figures(outcomes: Sequence[Outcome[T]], seconds: float,
             split: Callable[[T], tuple[float, float]]) -> dict[str, Any]:
    """The phase summary, and medians of its embed and search times and of the rest of the latency."""
    parts = [(o.latency_ms, *split(o.value)) for o in outcomes if o.value is not None and o.error is None]
    fig = {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(summarize(outcomes, seconds)).items()}
    fig["embed_ms_p50"] = round(statistics.median(e for _, e, _ in parts), 2)
    fig["search_ms_p50"] = round(statistics.median(s for _, _, s in parts), 2)
    fig["outside_ms_p50"] = round(statistics.median(lat - e - s for lat, e, s in parts), 2)
    return fig


def _load() -> float:
    """The 1-minute load average: the workers, Weaviate and Kafka share this machine's CPUs."""
    return round(os.getloadavg()[0], 2)


def _ratios(kafka: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    return {"p50_ratio": round(kafka["p50_ms"] / direct["p50_ms"], 2),
            "p99_ratio": round(kafka["p99_ms"] / direct["p99_ms"], 2)}


def _kafka_split(r: SearchReply) -> tuple[float, float]:
    return r.timings.embed_ms, r.timings.search_ms


def _direct_split(d: DirectResult) -> tuple[float, float]:
    return d.embed_ms, d.search_ms


def _measure_mode(s: Settings, client: SearchClient, direct: DirectSearcher, queries: Sequence[str], p: Params,
                  *, rate: float, requests: int, clients: int, warmup: int) -> dict[str, Any]:
    """Warm up (checking both ways find the same chunks), then the open-loop and closed-loop phases."""
    from tqdm import tqdm

    fields: dict[str, Any] = {"mode": p.mode, "top_k": p.top_k, "alpha": p.alpha}

    def text(i: int) -> str:
        return queries[i % len(queries)]

    def bar(what: str) -> Any:
        return tqdm(total=requests, desc=f"{p.mode}: {what}", unit="req")

    same = 0
    for i in tqdm(range(warmup), desc=f"{p.mode}: warm-up", unit="req"):
        # The first request also waits for the new worker's partitions to be assigned.
        reply = client.search(text(i), timeout=120.0 if i == 0 else REPLY_TIMEOUT, **fields)
        same += tuple(h.chunk_id for h in reply.hits) == direct.search(text(i), p).chunk_ids

    # Direct open-loop searches run on as many threads as the worker answers requests at once.
    with ThreadPoolExecutor(s.query_concurrency, thread_name_prefix="bench-direct") as pool:
        with bar(f"kafka at {rate:g}/s") as b:
            k_out, k_secs, k_lag = open_loop(lambda i: client.submit(text(i), **fields), rate=rate,
                                             count=requests, tick=b.update)
        k_load = _load()
        with bar(f"direct at {rate:g}/s") as b:
            d_out, d_secs, d_lag = open_loop(lambda i: pool.submit(direct.search, text(i), p), rate=rate,
                                             count=requests, tick=b.update)
        d_load = _load()
    at_rate = {"kafka": _figures(_replies_ok(k_out), k_secs, _kafka_split)
               | {"max_send_lag_ms": round(k_lag, 2), "load_1m": k_load},
               "direct": _figures(d_out, d_secs, _direct_split)
               | {"max_send_lag_ms": round(d_lag, 2), "load_1m": d_load}}

    with bar(f"kafka, {clients} clients") as b:
        kc_out, kc_secs = closed_loop(lambda i: client.search(text(i), timeout=REPLY_TIMEOUT, **fields),
                                      clients=clients, count=requests, tick=b.update)
    kc_load = _load()
    with bar(f"direct, {clients} clients") as b:
        dc_out, dc_secs = closed_loop(lambda i: direct.search(text(i), p), clients=clients, count=requests,
                                      tick=b.update)
    closed = {"kafka": _figures(_replies_ok(kc_out), kc_secs, _kafka_split) | {"load_1m": kc_load},
              "direct": _figures(dc_out, dc_secs, _direct_split) | {"load_1m": _load()}}
    return {"params": asdict(p), "same_hits": {"same": same, "of": warmup},
            "rate": at_rate | _ratios(at_rate["kafka"], at_rate["direct"]),
            "clients": closed | _ratios(closed["kafka"], closed["direct"])}


# --- the benchmark --------------------------------------------------------------------------------
def load_corpus(dataset: Path, docs: int) -> list[ChangeEvent]:
    """The first ``docs`` passages with text of a BEIR ``corpus.jsonl`` as version-1 plain-text upserts."""
    from workers.beir import change_event, read_corpus

    return [change_event(p) for p in read_corpus(dataset / "corpus.jsonl") if p.text.strip()][:docs]


def load_queries(dataset: Path) -> list[str]:
    """The query texts of a BEIR ``queries.jsonl``, in file order."""
    from workers.beir import read_queries

    texts = [text for _, text in read_queries(dataset / "queries.jsonl")]
    if not texts:
        raise FreshetError(f"{dataset / 'queries.jsonl'} holds no queries; point the bench at a BEIR dataset")
    return texts


def run(base: Settings, dataset: Path, *, rate: float = 20.0, clients: int = 8, requests: int = 400,
        modes: Sequence[str] = ("hybrid",), docs: int = 2000, top_k: int = 10, alpha: float = DEFAULT_ALPHA,
        warmup: int = 20, keep: bool = False) -> dict[str, Any]:
    """Index ``docs`` passages on a pipeline of its own, measure each mode; return every figure."""
    import shutil

    from freshet.client import SearchClient
    from freshet.publishing import publish_events
    from ops.stack import Stack, drop_pipeline, isolated
    from workers.search import fetch_limit

    events, queries = load_corpus(dataset, docs), load_queries(dataset)
    report: dict[str, Any] = {"dataset": str(dataset), "docs": len(events), "queries": len(queries),
                              "rate": rate, "requests": requests, "clients": clients, "top_k": top_k,
                              "warmup": warmup, "cpus": os.cpu_count()}
    Stack(base).up(["kafka", "weaviate"])
    s = isolated(base, f"bench-q-{uuid.uuid4().hex[:8]}", Path(tempfile.mkdtemp(prefix="freshet-bench-")),
                 query_cache_size=0)
    report["worker"] = {"query_concurrency": s.query_concurrency, "query_overfetch": s.query_overfetch,
                        "query_cache_size": s.query_cache_size}
    stack = Stack(s)
    client: SearchClient | None = None
    direct: DirectSearcher | None = None
    finished = False
    try:
        stack.up(["indexer", "query"])
        started = time.monotonic()
        publish_events(s, events, wait=True, timeout=900, desc="corpus")
        report["index_seconds"] = round(time.monotonic() - started, 1)
        client = SearchClient(s.kafka_access, request_topic=s.topic_requests, reply_topic=s.topic_replies,
                              timeout=REPLY_TIMEOUT)
        direct = DirectSearcher(s)
        report["load_before"] = [round(x, 2) for x in os.getloadavg()]
        fetch = fetch_limit(top_k, s.query_overfetch, False)
        report["modes"] = {m: _measure_mode(s, client, direct, queries, Params(m, top_k, alpha, fetch), rate=rate,
                                            requests=requests, clients=clients, warmup=warmup) for m in modes}
        report["load_after"] = [round(x, 2) for x in os.getloadavg()]
        finished = True
    finally:
        if client is not None:
            client.close()
        if direct is not None:
            direct.close()
        stack.down(["indexer", "query"])
        if keep or not finished:
            click.echo(f"bench pipeline {s.consumer_group_prefix}: worker logs in {s.home / 'logs'}", err=True)
        if not keep:
            drop_pipeline(s)
            if finished:
                shutil.rmtree(s.home, ignore_errors=True)
    return report


def format_report(r: dict[str, Any]) -> str:
    """The figures of :func:`run` as a table per mode."""
    head = (f"{'':<16}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>8}{'errors':>8}"
            f"{'embed p50':>11}{'search p50':>12}{'rest p50':>10}{'load':>6}")
    lines = [f"\nQuery latency over Kafka vs direct: {r['docs']:,} docs of {r['dataset']}, {r['queries']} queries "
             f"cycled, top_k {r['top_k']}, {r['warmup']} warm-up requests",
             f"  everything on this machine: {r['cpus']} CPUs, load average {r['load_before'][0]:.2f} before; "
             "'rest' = latency - embed - search (transport and queueing); 'load' = 1-min load after the phase"]
    for mode, m in r["modes"].items():
        same = m["same_hits"]
        lines += ["", f"{mode} (alpha {m['params']['alpha']}, {m['params']['fetch']} hits asked of Weaviate): "
                      f"kafka and direct returned the same top {r['top_k']} for {same['same']} of {same['of']} "
                      "warm-up queries", head]
        for key, title in (("rate", f"open loop at {r['rate']:g} req/s, {r['requests']} requests"),
                           ("clients", f"closed loop, {r['clients']} concurrent clients, {r['requests']} requests")):
            phase = m[key]
            lines.append(f"  {title}")
            for way in ("kafka", "direct"):
                f = phase[way]
                lag = f" (sender {f['max_send_lag_ms']:.0f} ms late at worst)" if "max_send_lag_ms" in f else ""
                lines.append(f"    {way:<12}{f['p50_ms']:>9.1f}{f['p99_ms']:>9.1f}{f['mean_ms']:>9.1f}"
                             f"{f['throughput_rps']:>8.1f}{f['errors']:>8}{f['embed_ms_p50']:>11.1f}"
                             f"{f['search_ms_p50']:>12.1f}{f['outside_ms_p50']:>10.1f}{f['load_1m']:>6.1f}{lag}")
                if f["first_error"]:
                    lines.append(f"      first error: {f['first_error']}")
                if key == "rate" and f["throughput_rps"] < 0.9 * r["rate"]:
                    lines.append(f"      served {f['throughput_rps']:.1f} of {r['rate']:g} req/s: saturated, so "
                                 "these latencies measure its backlog; try a lower --rate")
            lines.append(f"    {'kafka/direct':<12}{phase['p50_ratio']:>8.2f}x{phase['p99_ratio']:>8.2f}x")
    return "\n".join(lines)


def _parse_modes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    bad = [m for m in modes if m not in ("hybrid", "vector", "keyword")]
    if bad or not modes:
        raise click.BadParameter(f"{value!r}: give a comma-separated list of hybrid, vector, keyword")
    return modes


@click.command("query")
@click.argument("dataset", required=False, default=DEFAULT_DATASET,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--docs", default=2000, show_default=True, type=click.IntRange(1), help="Index the first N passages.")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Requests per second of the open-loop phase.")
@click.option("--requests", default=400, show_default=True, type=click.IntRange(1), help="Requests per phase.")
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1),
              help="Concurrent clients of the closed-loop phase.")
@click.option("--modes", default="hybrid", show_default=True, callback=_parse_modes,
              help="Comma-separated search modes: hybrid, vector, keyword.")
@click.option("-k", "--top-k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--alpha", default=DEFAULT_ALPHA, show_default=True, type=click.FloatRange(0, 1), help="Hybrid weight.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(1), help="Warm-up requests per mode.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's topics and collection afterwards.")
@click.pass_obj
def query_command(settings: Settings | None, dataset: Path, docs: int, rate: float, requests: int, clients: int,
                  modes: tuple[str, ...], top_k: int, alpha: float, warmup: int, as_json: bool, keep: bool) -> None:
    """Search latency over Kafka (request-reply) beside the same searches made directly.

    DATASET is a BEIR directory (corpus.jsonl, queries.jsonl); default ../shared/datasets/msmarco-5k
    next to the repository. Reports p50/p99 at a fixed rate and with concurrent clients, and the
    kafka/direct ratios.
    """
    try:
        report = run(settings or Settings(), dataset, rate=rate, clients=clients, requests=requests, modes=modes,
                     docs=docs, top_k=top_k, alpha=alpha, warmup=warmup, keep=keep)
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
