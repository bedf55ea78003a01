"""``freshet bench bulk``: chunks per second through the whole pipeline beside the model's own ``encode``.

On a pipeline of its own (topics, collection, consumer groups) on the running stack's Kafka and
Weaviate, one indexer and one query worker are started and ready (models loaded, groups joined);
then the clock starts, the passages of a BEIR corpus are published as change events (one document
each: real text), and it stops when the last document is applied (its chunks written, so
searchable; the collection's object count is checked against the chunk count). The baseline, in
this process after the workers stopped: the model (same name, backend and batch size) encodes
exactly the chunk texts the indexer embedded (cut as it cuts them, :func:`ops.bench.exact.chunk_corpus`)
in one call, timed after a warm-up. The ratio of the two is what the pipeline delivers of what the
model allows. Peak resident memory (``VmHWM``) of each worker is read at the end of the run.

CPU time (user + system, each process with its descendants) is read for every process of the run
over the pipeline's window: the indexer, the query worker, Weaviate, Kafka and this process (the
publisher); the baseline's encode is timed in CPU as well. On a machine of ``cores`` cores the
pipeline cannot take less wall time than all that work spread over every core, so
``ceiling_ratio`` = encode seconds / ((encode CPU + the CPU of every process but the indexer) /
cores) bounds the ratio from above, however well the indexer overlaps its work: the other processes'
CPU is not the indexer's to remove, and its model costs at least the baseline's encode.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from freshet.errors import FreshetError
from freshet.publishing import publish_events
from freshet.settings import Settings
from ops import procs
from ops.bench import SHARED_DATASETS, exact
from ops.bench.evaluation import stored_chunks
from ops.stack import Stack, drop_pipeline, isolated
from workers.beir import change_event, read_corpus
from workers.embedding import SentenceTransformerEmbedder

DEFAULT_CORPUS = SHARED_DATASETS / "dbpedia-5k"
"""5,000 DBpedia abstracts: 5,018 chunks."""


@dataclass(frozen=True)
class Bulk:
    docs: int
    chunks: int
    """Chunks the indexer wrote (objects in the collection)."""
    pipeline_s: float
    pipeline_chunks_per_s: float
    encode_chunks: int
    encode_s: float
    encode_chunks_per_s: float
    ratio: float
    """Pipeline chunks per second over encode's."""
    batch_size: int
    backend: str
    indexer_peak_rss_mb: float
    query_peak_rss_mb: float
    load_average: tuple[float, float, float]
    cpu_s: dict[str, float]
    """CPU seconds over the pipeline's window per process (with descendants); ``encode``: the baseline's."""
    ceiling_ratio: float
    """The highest ratio the machine allows given the other processes' CPU (see the module's text)."""


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` and its live descendants (NaN if ``pid`` is gone)."""
    if pid is None:
        return float("nan")
    kids = _children()
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            if p == pid:
                return float("nan")
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        todo.extend(kids.get(p, []))
    return total


def ceiling(encode_s: float, encode_cpu_s: float, others_cpu_s: float, cores: int) -> float:
    """The highest pipeline / encode ratio ``cores`` cores allow when the pipeline must also run
    ``others_cpu_s`` CPU seconds of work besides the model's ``encode_cpu_s``."""
    floor_s = (encode_cpu_s + others_cpu_s) / cores
    return round(min(1.0, encode_s / floor_s), 3) if floor_s > 0 else float("nan")


def peak_rss_mb(pid: int | None) -> float:
    """The peak resident set of process ``pid`` in MB (``VmHWM``), or NaN when it cannot be read."""
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def _worker_pid(settings: Settings, role: str) -> int | None:
    for pidfile in sorted((settings.home / "run").glob(f"{role}*.pid")):
        pid = procs.read_pid(pidfile)
        if pid is not None:
            return pid
    return None


def _cpu(pids: dict[str, int | None]) -> dict[str, float]:
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out["publisher"] = time.process_time()
    return out


def pipeline(base: Settings, events: list[Any], home: Path) -> tuple[int, float, float, float, dict[str, float]]:
    """Chunks written, seconds from the first publish to the last document applied, each worker's
    peak RSS (indexer, query) in MB, and each process's CPU seconds over that window."""
    Stack(base).up(["kafka", "weaviate"])
    settings = isolated(base, f"bench-bulk-{uuid.uuid4().hex[:8]}", home, start_timeout_seconds=600.0)
    stack = Stack(settings)
    try:
        stack.up(["indexer", "query"])
        pids = {"indexer": _worker_pid(settings, "indexer"), "query": _worker_pid(settings, "query"),
                "weaviate": _worker_pid(base, "weaviate"), "kafka": _worker_pid(base, "kafka")}
        before = _cpu(pids)
        started = time.perf_counter()
        publish_events(settings, events, wait=True, timeout=max(900.0, 0.5 * len(events)), desc="bulk: publishing")
        seconds = time.perf_counter() - started
        after = _cpu(pids)
        cpu = {k: round(after[k] - before[k], 1) for k in after}
        chunks = stored_chunks(settings)
        rss = (peak_rss_mb(pids["indexer"]), peak_rss_mb(pids["query"]))
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(settings)
    return chunks, seconds, *rss, cpu


def encode(base: Settings, events: list[Any]) -> tuple[int, float, float, str]:
    """Chunk texts encoded by the model in this process: their count, the seconds, the CPU
    seconds, the backend."""
    embedder = SentenceTransformerEmbedder.for_settings(base)
    chunks = exact.chunk_corpus(events, embedder, min_chars=base.chunk_min_chars, context=base.chunk_context)
    texts = list({c.content_hash: c.embed_text for _, c in chunks}.values())  # the indexer embeds a text once
    embedder.embed(texts[:64])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    embedder.embed(texts)
    return len(texts), time.perf_counter() - started, time.process_time() - cpu, embedder.backend


def run(base: Settings, corpus: Path, docs: int) -> Bulk:
    events = [change_event(p) for p in read_corpus(corpus / "corpus.jsonl")[:docs]]
    with tempfile.TemporaryDirectory(prefix="freshet-bench-bulk-") as home:
        chunks, seconds, indexer_rss, query_rss, cpu = pipeline(base, events, Path(home))
    n, encode_s, encode_cpu_s, backend = encode(base, events)
    cpu["encode"] = round(encode_cpu_s, 1)
    others = sum(v for k, v in cpu.items() if k not in ("indexer", "encode") and v == v)
    load = os.getloadavg()
    p_cps, e_cps = chunks / seconds, n / encode_s
    return Bulk(docs=len(events), chunks=chunks, pipeline_s=round(seconds, 1), pipeline_chunks_per_s=round(p_cps, 1),
                encode_chunks=n, encode_s=round(encode_s, 1), encode_chunks_per_s=round(e_cps, 1),
                ratio=round(p_cps / e_cps, 3), batch_size=base.embed_batch_size, backend=backend,
                indexer_peak_rss_mb=indexer_rss, query_peak_rss_mb=query_rss,
                load_average=(round(load[0], 2), round(load[1], 2), round(load[2], 2)), cpu_s=cpu,
                ceiling_ratio=ceiling(encode_s, encode_cpu_s, others, os.cpu_count() or 1))


def report(b: Bulk) -> str:
    return "\n".join([
        f"freshet bench bulk ({os.cpu_count()} cores; model backend {b.backend}, batch {b.batch_size}; "
        f"load average {b.load_average[0]} {b.load_average[1]} {b.load_average[2]})",
        "| | chunks | seconds | chunks/s |",
        "|---|---:|---:|---:|",
        f"| pipeline (publish to applied, {b.docs} documents) | {b.chunks} | {b.pipeline_s} | "
        f"{b.pipeline_chunks_per_s} |",
        f"| model encode, same texts, one process | {b.encode_chunks} | {b.encode_s} | {b.encode_chunks_per_s} |",
        f"pipeline / encode: {b.ratio} (ceiling on {os.cpu_count()} cores given the other processes' CPU: "
        f"{b.ceiling_ratio})",
        "CPU seconds over the pipeline's window: " + ", ".join(f"{k} {v}" for k, v in b.cpu_s.items()),
        f"peak RSS: indexer {b.indexer_peak_rss_mb} MB, query worker {b.query_peak_rss_mb} MB",
    ])


@click.command("bulk")
@click.argument("corpus", required=False, default=DEFAULT_CORPUS,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--docs", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Publish the corpus's first N passages, one document each.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def bulk_command(settings: Settings | None, corpus: Path, docs: int, as_json: bool) -> None:
    """Chunks per second through the whole pipeline beside the model's own encode of the same texts
    (CORPUS: a BEIR directory; default the shared dbpedia-5k)."""
    try:
        result = run(settings or Settings(), corpus, docs)
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(asdict(result)) if as_json else report(result))
