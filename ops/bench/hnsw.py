"""``freshet bench hnsw``: Weaviate's HNSW settings, recall@k against the exact top k beside latency.

The chunks of one or more BEIR corpora (cut and embedded as the indexer does; vectors cached as
``freshet eval`` caches them, :mod:`ops.bench.exact`) are written, with their vectors, to one
collection per build setting (``efConstruction``, ``maxConnections``: fixed when a collection is
made) on the running stack's Weaviate. For each search-time ``ef`` (changed in place; ``-1`` is
Weaviate's dynamic ef, ``limit`` x 8 between 100 and 500), every judged query of the corpora is
searched ``repeats`` times with ``near_vector`` at each limit k the query worker asks (``top_k``,
10 by default, for a vector search; 50 candidates for a hybrid one; Weaviate raises an ``ef`` below
k to k), and the result is compared with the exact top k (cosine by brute force over the same
vectors). Each row prints recall@k (the share of the exact top k found, over all queries), the p50
and p99 of the search's wall time seen by a weaviate-client (gRPC, loopback), and how long the
build took. The chosen setting is the one of lowest p50 (summed over the limits) with recall@k at
least ``--min-recall`` at every limit.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from freshet.settings import Settings
from ops.bench import SHARED_DATASETS, exact
from ops.bench.load import percentile
from workers.beir import change_event, load_dataset
from workers.embedding import SentenceTransformerEmbedder

DEFAULT_DATASETS = (SHARED_DATASETS / "msmarco-5k", SHARED_DATASETS / "dbpedia-5k")
BUILDS = ((64, 16), (128, 32), (256, 64))
"""``(efConstruction, maxConnections)``; Weaviate's default is (128, 32)."""
EFS = (16, 32, 48, 64, 100, 128, 256, -1)
"""Search-time ``ef``; -1 is Weaviate's default, the dynamic ef."""
LIMITS = (10, 50)


@dataclass(frozen=True)
class Row:
    ef_construction: int
    max_connections: int
    ef: int
    limit: int
    recall: float
    p50_ms: float
    p99_ms: float
    searches: int
    build_s: float


def recall_at(found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], k: int) -> float:
    """The share of each query's exact top ``k`` found in its top ``k``, over all queries."""
    wanted = sum(min(k, len(t)) for t in truth)
    hit = sum(len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth, strict=True))
    return hit / wanted if wanted else 1.0


def choose(rows: Sequence[Row], min_recall: float) -> Row | None:
    """The setting (build and ef) of lowest p50 whose recall is at least ``min_recall`` at every
    limit measured (the query worker asks ``top_k`` for a vector search and its hybrid candidates
    for a hybrid one); its row at the smallest limit, or None. Ties: smaller build, then smaller ef."""
    by_setting: dict[tuple[int, int, int], list[Row]] = {}
    for r in rows:
        by_setting.setdefault((r.ef_construction, r.max_connections, r.ef), []).append(r)
    good = [sorted(rs, key=lambda r: r.limit) for rs in by_setting.values() if all(r.recall >= min_recall for r in rs)]
    best = min(good, key=lambda rs: (sum(r.p50_ms for r in rs), rs[0].ef_construction, rs[0].max_connections,
                                     rs[0].ef if rs[0].ef > 0 else 10**9), default=None)
    return best[0] if best else None


def _build(client: Any, name: str, ef_construction: int, max_connections: int, vectors: np.ndarray[Any, Any]) -> float:
    import weaviate.classes as wvc

    from workers.weaviate_store import VECTOR_NAME

    started = time.perf_counter()
    client.collections.create(
        name, properties=[wvc.config.Property(name="row", data_type=wvc.config.DataType.INT)],
        vector_config=wvc.config.Configure.Vectors.self_provided(
            name=VECTOR_NAME, vector_index_config=wvc.config.Configure.VectorIndex.hnsw(
                distance_metric=wvc.config.VectorDistances.COSINE, ef_construction=ef_construction,
                max_connections=max_connections)))
    coll = client.collections.use(name)
    with coll.batch.fixed_size(batch_size=500) as batch:
        for row in tqdm(range(vectors.shape[0]), desc=f"  build efC {ef_construction} M {max_connections}",
                        unit="vec", leave=False):
            batch.add_object(properties={"row": row}, vector={VECTOR_NAME: vectors[row].tolist()},
                             uuid=uuid.UUID(int=row + 1))
    failed = coll.batch.failed_objects
    if failed:
        raise RuntimeError(f"{len(failed)} vectors not written to {name}: {failed[0].message}")
    return time.perf_counter() - started


def _search(client: Any, name: str, ef: int, queries: np.ndarray[Any, Any], limit: int,
            repeats: int) -> tuple[list[list[int]], list[float]]:
    import weaviate.classes as wvc

    from workers.weaviate_store import VECTOR_NAME

    coll = client.collections.use(name)
    coll.config.update(vector_config=wvc.config.Reconfigure.Vectors.update(
        name=VECTOR_NAME, vector_index_config=wvc.config.Reconfigure.VectorIndex.hnsw(ef=ef)))
    found: list[list[int]] = []
    times: list[float] = []
    for q in queries[: min(10, len(queries))]:  # warm-up
        coll.query.near_vector(q.tolist(), target_vector=VECTOR_NAME, limit=limit, return_properties=["row"])
    for rep in range(repeats):
        for q in queries:
            vec = q.tolist()
            t0 = time.perf_counter()
            res = coll.query.near_vector(vec, target_vector=VECTOR_NAME, limit=limit, return_properties=["row"])
            times.append(time.perf_counter() - t0)
            if rep == 0:
                found.append([int(o.properties["row"]) for o in res.objects])
    return found, times


def run(base: Settings, datasets: Sequence[Path], *, builds: Sequence[tuple[int, int]] = BUILDS,
        efs: Sequence[int] = EFS, limits: Sequence[int] = LIMITS, repeats: int = 5,
        keep: bool = False) -> dict[str, Any]:
    from ops.stack import Stack
    from workers.weaviate_store import client_for

    embedder = SentenceTransformerEmbedder.for_settings(base)
    matrices, queries = [], []
    for path in datasets:
        data = load_dataset(path)
        events = [change_event(p) for p in data.corpus]
        matrices.append(exact.index_corpus(base, path, events, embedder)[1].vectors)
        queries.append(exact.unit(np.asarray(embedder.embed(list(data.queries.values())), dtype=np.float32)))
    vectors, qvecs = np.concatenate(matrices), np.concatenate(queries)
    truth = {k: [[i for i, _ in hits] for hits in exact.top_chunks(qvecs, vectors, k)] for k in limits}
    Stack(base).up(["weaviate"])
    client = client_for(base)
    rows: list[Row] = []
    try:
        for ef_construction, max_connections in tqdm(builds, desc="hnsw: builds", unit="build"):
            name = f"FreshetBenchHnsw_{uuid.uuid4().hex[:8]}"
            try:
                build_s = _build(client, name, ef_construction, max_connections, vectors)
                grid = [(ef, k) for ef in efs for k in limits]
                for ef, k in tqdm(grid, desc=f"  efC {ef_construction} M {max_connections}: ef x limit",
                                  unit="setting", leave=False):
                    found, times = _search(client, name, ef, qvecs, k, repeats)
                    ms = [t * 1000 for t in times]
                    rows.append(Row(ef_construction, max_connections, ef, k, recall_at(found, truth[k], k),
                                    round(statistics.median(ms), 2), round(percentile(ms, 99), 2), len(ms),
                                    round(build_s, 1)))
            finally:
                if not keep:
                    client.collections.delete(name)
    finally:
        client.close()
    return {"vectors": int(vectors.shape[0]), "queries": int(qvecs.shape[0]), "limits": list(limits),
            "repeats": repeats,
            "datasets": [p.name for p in datasets], "rows": [asdict(r) for r in rows]}


def print_report(result: dict[str, Any], min_recall: float) -> None:
    rows = [Row(**r) for r in result["rows"]]
    best = choose(rows, min_recall)
    click.echo(f"hnsw: {result['vectors']} vectors ({', '.join(result['datasets'])}), {result['queries']} queries "
               f"x {result['repeats']}, near_vector at limit k; recall@k against the exact top k")
    click.echo(f"{'efConstruction':>14} {'maxConn':>7} {'ef':>7} {'k':>3} {'recall@k':>8} {'p50 ms':>7} "
               f"{'p99 ms':>7} {'build s':>8}")
    for r in rows:
        ef = "dynamic" if r.ef < 0 else str(r.ef)
        chosen = best is not None and (r.ef_construction, r.max_connections, r.ef) == (
            best.ef_construction, best.max_connections, best.ef)
        mark = "  <- chosen" if chosen else ""
        click.echo(f"{r.ef_construction:>14} {r.max_connections:>7} {ef:>7} {r.limit:>3} {r.recall:>8.4f} "
                   f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.build_s:>8.1f}{mark}")
    click.echo(f"chosen (lowest p50 with recall@k >= {min_recall} at every k): "
               + (f"efConstruction {best.ef_construction}, maxConnections {best.max_connections}, "
                  f"ef {'dynamic' if best.ef < 0 else best.ef}" if best else "none"))


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"comma-separated integers, got {value!r}") from exc


def _builds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(a), int(b)) for a, b in (v.split(":") for v in value.split(",") if v.strip()))
    except ValueError as exc:
        raise click.BadParameter(f"comma-separated efConstruction:maxConnections pairs, got {value!r}") from exc
    return out


@click.command("hnsw")
@click.argument("datasets", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--builds", default=",".join(f"{a}:{b}" for a, b in BUILDS), show_default=True, callback=_builds,
              help="efConstruction:maxConnections pairs, one collection each.")
@click.option("--ef", "efs", default=",".join(map(str, EFS)), show_default=True, callback=_ints,
              help="Search-time ef values (-1: Weaviate's dynamic ef).")
@click.option("-k", "--limits", default=",".join(map(str, LIMITS)), show_default=True, callback=_ints,
              help="Results per search: the query worker asks top_k (10 by default) for a vector search and "
                   "FRESHET_HYBRID_CANDIDATES (50) of each side for a hybrid one.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1), help="Searches per query and ef.")
@click.option("--min-recall", default=0.99, show_default=True, type=click.FloatRange(0, 1))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's collections afterwards.")
@click.pass_obj
def hnsw_command(settings: Settings | None, datasets: tuple[Path, ...], builds: tuple[tuple[int, int], ...],
                 efs: tuple[int, ...], limits: tuple[int, ...], repeats: int, min_recall: float, as_json: bool,
                 keep: bool) -> None:
    """Recall@k of Weaviate's HNSW against the exact top k, beside search latency, per setting."""
    base = settings or Settings()
    result = run(base, datasets or DEFAULT_DATASETS, builds=builds, efs=efs, limits=limits, repeats=repeats,
                 keep=keep)
    best = choose([Row(**r) for r in result["rows"]], min_recall)
    result["chosen"] = asdict(best) if best else None
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        click.echo()
    else:
        print_report(result, min_recall)
