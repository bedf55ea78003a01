"""``freshet bench throughput``: events per second the indexers apply, with 1, 2, ... indexers.

For each indexer count, on a pipeline of its own (topics, collection, consumer groups) on the
running stack's Kafka and Weaviate: the same N change events (the passages of a BEIR corpus, one
document each: real text, mostly one chunk) are published first, then that many indexers start
together (spawned side by side), each a worker process of its own (its own model), and an
:class:`~freshet.client.AppliedWatcher` times the drain. The rate is taken between 10 % and 90 % of
the documents applied, so the model load, the group join and the rebalances while the indexers
join are left out (the time to the first applied document and to the last are reported beside
it); it is what a backlog drains at, the figure that decides how many indexers a stream needs.
On a machine with fewer cores than indexers the processes share the cores: the report prints the
core count beside the figures.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import httpx

from freshet.client import AppliedWatcher, wanted_versions
from freshet.errors import FreshetError
from freshet.publishing import publish_events
from freshet.settings import Settings
from ops import procs
from ops.stack import Stack, drop_pipeline, isolated
from workers.beir import change_event, read_corpus
from workers.kafka_admin import ensure_topics


@dataclass(frozen=True)
class Run:
    indexers: int
    events: int
    partitions: int
    time_to_first_s: float
    total_s: float
    events_per_s: float
    chunks_embedded: int
    chunks_per_s: float


def _indexers(settings: Settings, count: int, home: Path) -> list[Settings]:
    """Settings of ``count`` indexer workers of one pipeline: one home and web port each."""
    return [settings.model_copy(update={"home": home / f"indexer-{i}", "indexer_web_port": procs.free_port()})
            for i in range(count)]


def _watch(watcher: AppliedWatcher, wanted: dict[str, int], start: float, timeout: float) -> tuple[float, float, float]:
    """Seconds from ``start`` to the first applied document, to the last, and from 10 % to 90 % of them."""
    marks: dict[float, float] = {}
    goals = {0.0: 1, 0.1: max(1, len(wanted) // 10), 0.9: max(1, len(wanted) * 9 // 10), 1.0: len(wanted)}
    while time.monotonic() - start < timeout:
        done = watcher.count_applied(wanted)
        now = time.monotonic()
        for share, goal in goals.items():
            if done >= goal:
                marks.setdefault(share, now - start)
        if done == len(wanted):
            return marks[0.0], marks[1.0], marks[0.9] - marks[0.1]
        time.sleep(0.1)
    raise FreshetError(f"{watcher.count_applied(wanted)} of {len(wanted)} documents applied in {timeout:.0f} s")


def _spawn(w: Settings) -> None:
    """Start an indexer worker without waiting for it: all of a run's workers start side by side."""
    env = {**os.environ, **w.as_env(), "PYTHONUNBUFFERED": "1"}
    procs.spawn([sys.executable, "-m", "freshet.cli", "worker", "indexer"], log=w.home / "logs" / "indexer.log",
                pidfile=w.home / "run" / "indexer.pid", env=env)


def _chunks(workers: list[Settings]) -> int:
    total = 0
    for w in workers:
        stats = httpx.get(w.worker_url("indexer", "/stats"), timeout=10).json()
        total += int(stats.get("chunks_embedded", 0))
    return total


def measure(base: Settings, corpus: Path, events: int, indexers: int, home: Path) -> Run:
    """One run: publish ``events`` passages of ``corpus``, start ``indexers`` indexers, time the drain."""
    evs = [change_event(p) for p in read_corpus(corpus / "corpus.jsonl")[:events]]
    settings = isolated(base, f"bench-tput-{uuid.uuid4().hex[:8]}", home / f"n{indexers}",
                        start_timeout_seconds=600.0)
    workers = _indexers(settings, indexers, settings.home)
    ensure_topics(settings.kafka_access, settings.topics(), partitions=settings.topic_partitions,
                  replication=settings.topic_replication, compacted=[settings.topic_applied])
    watcher = AppliedWatcher(settings.kafka_access, settings.topic_applied)
    try:
        publish_events(settings, evs, wait=False, timeout=0, desc=f"publishing for {indexers} indexer(s)")
        started = time.monotonic()
        for w in workers:
            _spawn(w)
        to_first, to_last, middle = _watch(watcher, wanted_versions(evs), started, timeout=3600)
        chunks = _chunks(workers)
    finally:
        watcher.close()
        for w in workers:
            Stack(w).down(["indexer"])
        drop_pipeline(settings)
    middle_events = max(1, len(evs) * 9 // 10) - max(1, len(evs) // 10)
    return Run(indexers=indexers, events=len(evs), partitions=settings.topic_partitions,
               time_to_first_s=round(to_first, 1), total_s=round(to_last, 1),
               events_per_s=round(middle_events / middle, 1) if middle > 0 else float("nan"),
               chunks_embedded=chunks, chunks_per_s=round(chunks / (to_last - to_first), 1)
               if to_last > to_first else float("nan"))


def table(runs: list[Run]) -> str:
    lines = [f"freshet bench throughput ({os.cpu_count()} cores, one model per indexer process)",
             "| indexers | events | partitions | first applied (s) | all applied (s) | events/s (10-90 %) | chunks/s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.indexers} | {r.events} | {r.partitions} | {r.time_to_first_s} | {r.total_s} | "
              f"{r.events_per_s} | {r.chunks_per_s} |" for r in runs]
    return "\n".join(lines)


@click.command("throughput")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--events", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Change events per run (the corpus's first passages, one document each).")
@click.option("--indexers", default="1,2", show_default=True, help="Indexer counts to run, comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.pass_obj
def throughput_command(settings: Settings, corpus: Path, events: int, indexers: str, as_json: bool) -> None:
    """Events per second applied by 1, 2, ... indexers draining the same backlog (CORPUS: a BEIR directory)."""
    try:
        counts = [int(c) for c in indexers.split(",") if c.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{indexers!r}: give counts like 1,2") from exc
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="freshet-bench-tput-") as home:
            for n in counts:
                runs.append(measure(settings, corpus, events, n, Path(home)))
                click.echo(json.dumps(asdict(runs[-1])), err=True)
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps([asdict(r) for r in runs]) if as_json else table(runs))
