"""``freshet bench scale``: how start-up and the query worker's memory grow with the index.

On a pipeline of its own (topics, collection, consumer groups, worker home) on the running
stack's Kafka and Weaviate, it measures:

- **indexer recovery**: the time from starting an indexer worker until Faust reports its state
  table recovered (``Worker ready`` in its log; the agents take records only from then on), with a
  state table of N documents, for ``FRESHET_STATE_STORE=memory`` (the whole
  changelog replayed into memory), ``rocksdb`` cold (no local database: the changelog replayed to
  disk) and ``rocksdb`` warm (a restart with the local databases present: only what follows their
  persisted offsets is read); beside the same start with an empty table (model load, group join).
- **query worker start**: the time from starting a query worker until it is ready (its applied
  view caught up with the applied topic), with N documents on the applied topic and with none.
- **view memory**: an :class:`~workers.applied_view.AppliedView` of ``--view-docs`` documents of
  5 chunk ids each is built in this process; ``tracemalloc`` gives its bytes, extrapolated to a
  million chunk ids, beside a dict of frozensets of id strings (what the view held before).

Embedding N documents would take hours on a small machine and says nothing about the state size,
so the N documents' states are written straight to the state changelog in the indexer's format
(key: the JSON document key; value: a :class:`~workers.planning.DocState` with 2 chunk ids, on the
partition Kafka's default partitioner gives the key), and their applied records straight to the
applied topic (2 chunk ids, plus a progress record per partition). The time is read from the
worker's log rather than from a change applied after the start: Faust's consumer may skip a record
fetched around recovery, and the delivery guard's read-back (up to two check periods later) would
then be measured instead.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from kafka import KafkaProducer
from tqdm import tqdm

from freshet.errors import FreshetError
from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline, isolated
from schemas.applied import AppliedRecord, ProgressRecord, progress_key
from schemas.change import document_key
from workers.applied_view import AppliedView
from workers.kafka_admin import ensure_topics
from workers.planning import DocState
from workers.topology import state_changelog

CHUNKS_PER_STATE = 2
VIEW_CHUNKS = 5
RECOVERED = "[^---Recovery]: Worker ready"


@dataclass(frozen=True)
class Figures:
    documents: int
    partitions: int
    indexer_start_empty_s: float
    indexer_recovery_memory_s: float
    indexer_recovery_rocksdb_cold_s: float
    indexer_recovery_rocksdb_warm_s: float
    query_start_empty_s: float
    query_start_s: float
    view_documents: int
    view_chunk_ids: int
    view_mb_per_million_chunk_ids: float
    strings_mb_per_million_chunk_ids: float


def _chunk_id(doc: str, i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-scale/{doc}/{i}"))


def _fill(settings: Settings, n: int) -> None:
    """N states on the state changelog and N applied records (with progress) on the applied topic."""
    producer = KafkaProducer(**settings.kafka_access.kafka_python(), acks="all", linger_ms=20,
                             batch_size=256 * 1024, compression_type=None)
    now = datetime.now(UTC)
    changelog = state_changelog(settings.consumer_group_prefix)
    parts = settings.topic_partitions
    try:
        for i in tqdm(range(n), desc="states and applied records", unit="doc"):
            doc = f"bench/{i:07d}.md"
            key = document_key(None, doc)
            p = _partition(key.encode(), parts)
            ids = [_chunk_id(doc, c) for c in range(CHUNKS_PER_STATE)]
            state = DocState(version=1, chunk_ids=ids, path_hashes=["0" * 16] * len(ids), props_hash="0" * 16,
                             partition=p, offset=-1)
            producer.send(changelog, key=json.dumps(key).encode(), value=state.model_dump_json().encode(),
                          partition=p)
            rec = AppliedRecord(doc_id=doc, version=1, op="upsert", chunk_ids=ids, source_partition=p,
                                source_offset=0, applied_at=now)
            producer.send(settings.topic_applied, key=key.encode(), value=rec.model_dump_json().encode(),
                          partition=p % parts)
        for p in range(parts):
            producer.send(settings.topic_applied, key=progress_key(p), partition=p,
                          value=ProgressRecord(partition=p, through=0).model_dump_json().encode())
        producer.flush(120)
    finally:
        producer.close()


def _partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the publisher's producer places the key."""
    from kafka.partitioner.default import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _indexer_start(settings: Settings, timeout: float = 900.0) -> float:
    """Seconds from starting the indexer until Faust reports its table recovered (``Worker ready``
    after ``Recovery complete``: the agents take records from then on)."""
    log_path = settings.home / "logs" / "indexer.log"
    started_at, started = time.time(), time.monotonic()
    Stack(settings).up(["indexer"])
    try:
        while time.monotonic() - started < timeout:
            at = _recovered_at(log_path, since=started_at)
            if at is not None:
                return at - started_at
            time.sleep(0.5)
        raise FreshetError(f"the indexer did not recover its table within {timeout:.0f}s; log: {log_path}")
    finally:
        Stack(settings).down(["indexer"])


def _recovered_at(log_path: Path, since: float) -> float | None:
    """The time of the first ``Recovery]: Worker ready`` line at or after ``since`` (epoch seconds)."""
    if not log_path.exists():
        return None
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if RECOVERED in line:
            try:
                at = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if at >= since:
                return at
    return None


def _query_start(settings: Settings) -> float:
    started = time.monotonic()
    Stack(settings).up(["query"])
    took = time.monotonic() - started
    Stack(settings).down(["query"])
    return took


def view_memory(docs: int) -> tuple[float, float]:
    """MB per million chunk ids: the applied view (packed), and a dict of frozensets of strings."""
    now = datetime.now(UTC)
    records = [AppliedRecord(doc_id=f"bench/{i:07d}.md", version=1, op="upsert", source_partition=0, source_offset=i,
                             applied_at=now, chunk_ids=[_chunk_id(str(i), c) for c in range(VIEW_CHUNKS)])
               for i in range(docs)]
    per_million = 1_000_000 / (docs * VIEW_CHUNKS) / 1e6
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        view = AppliedView()
        for r in records:
            view.apply(r)
        packed = tracemalloc.get_traced_memory()[0] - base
        del view
        base = tracemalloc.get_traced_memory()[0]
        strings = {document_key(r.tenant, r.doc_id): (r.version, frozenset(str(c) for c in r.chunk_ids))
                   for r in records}
        plain = tracemalloc.get_traced_memory()[0] - base
        del strings
    finally:
        tracemalloc.stop()
    return packed * per_million, plain * per_million


def run(base: Settings, documents: int, view_docs: int, home: Path) -> Figures:
    tag = f"bench-scale-{uuid.uuid4().hex[:8]}"
    settings = isolated(base, tag, home, delivery_check_seconds=30.0, start_timeout_seconds=600.0)
    memory = settings.model_copy(update={"state_store": "memory"})
    try:
        ensure_topics(settings.kafka_access, settings.topics(), partitions=settings.topic_partitions,
                      replication=settings.topic_replication, compacted=[settings.topic_applied])
        empty = _indexer_start(memory)  # also creates the topics and the state changelog
        query_empty = _query_start(settings)
        _fill(settings, documents)
        figures = Figures(
            documents=documents, partitions=settings.topic_partitions,
            indexer_start_empty_s=empty,
            indexer_recovery_memory_s=_indexer_start(memory),
            indexer_recovery_rocksdb_cold_s=_indexer_start(settings),
            indexer_recovery_rocksdb_warm_s=_indexer_start(settings),
            query_start_empty_s=query_empty, query_start_s=_query_start(settings),
            view_documents=view_docs, view_chunk_ids=view_docs * VIEW_CHUNKS,
            view_mb_per_million_chunk_ids=0.0, strings_mb_per_million_chunk_ids=0.0)
    finally:
        Stack(settings).down(["indexer", "query"])
        drop_pipeline(settings)
    packed, plain = view_memory(view_docs)
    return Figures(**{**asdict(figures), "view_mb_per_million_chunk_ids": packed,
                      "strings_mb_per_million_chunk_ids": plain})


def table(f: Figures) -> str:
    n = f"{f.documents:,}"
    rows = [
        ("indexer start, empty state table", f"{f.indexer_start_empty_s:.1f} s"),
        (f"indexer recovery, {n} docs, memory", f"{f.indexer_recovery_memory_s:.1f} s"),
        (f"indexer recovery, {n} docs, rocksdb cold (no local DB)", f"{f.indexer_recovery_rocksdb_cold_s:.1f} s"),
        (f"indexer recovery, {n} docs, rocksdb warm (restart)", f"{f.indexer_recovery_rocksdb_warm_s:.1f} s"),
        ("query worker start, empty applied topic", f"{f.query_start_empty_s:.1f} s"),
        (f"query worker start, {n} docs", f"{f.query_start_s:.1f} s"),
        (f"applied view, per million chunk ids ({f.view_chunk_ids:,} measured)",
         f"{f.view_mb_per_million_chunk_ids:.0f} MB"),
        ("  same ids as frozensets of strings", f"{f.strings_mb_per_million_chunk_ids:.0f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>9}" for a, b in rows)


@click.command("scale")
@click.option("--documents", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Documents in the state table and on the applied topic.")
@click.option("--view-docs", type=click.IntRange(min=1), default=200_000, show_default=True,
              help=f"Documents ({VIEW_CHUNKS} chunk ids each) of the in-process applied view measured.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_obj
def scale_command(settings: Settings, documents: int, view_docs: int, as_json: bool) -> None:
    """Indexer recovery and query worker start at N documents; the applied view's memory."""
    try:
        with tempfile.TemporaryDirectory(prefix="freshet-bench-scale-") as home:
            figures = run(settings, documents, view_docs, Path(home))
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(asdict(figures)) if as_json else table(figures))

