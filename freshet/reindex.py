"""``freshet reindex``: build the next index generation beside the active one, switch to it, retire the old.

The next generation is built by indexers of its own (the same worker, started with the new model or
chunker settings, their own collection, consumer groups and state table: docs/reindex.md),
reading the changes topic from its start and then keeping up with it, so searches keep being answered
by the active generation throughout. Once the new generation's indexers have handled every partition
up to its end, the generations topic names it active: query workers switch to it between two requests
(each reply names its generation), the local stack's indexers restart into it, and after
``FRESHET_GENERATION_GRACE_SECONDS`` the old collection is deleted.

Running it again with the same settings resumes: the builders' positions and states are in Kafka.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from tqdm import tqdm

from freshet.errors import ConfigError, FreshetError
from freshet.retire import forget_generation
from freshet.settings import Settings
from ops import procs
from schemas.applied import ProgressRecord, generation_prefixes, parse_applied
from schemas.change import document_key
from schemas.generations import ACTIVE_KEY, GENERATION_SETTINGS, GenerationRecord, generation_key
from workers.generation import adopt, generation_of, generation_record, generation_settings, read_generations
from workers.kafka_admin import ensure_topics

log = structlog.get_logger(__name__)


@dataclass
class ReindexReport:
    """What a reindex did."""

    generation: str
    collection: str
    previous: str
    seconds: float = 0.0
    documents: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    switched: bool = False
    dropped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def embedded_share(self) -> float:
        """The share of the new generation's chunks that were embedded (not taken from a stored vector)."""
        total = self.chunks_embedded + self.chunks_reused
        return self.chunks_embedded / total if total else 0.0


def parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    """``--set`` values (``chunk_min_chars=400`` or ``FRESHET_CHUNK_MIN_CHARS=400``) as settings fields."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        field_name = name.strip().lower().removeprefix("freshet_")
        if not sep or field_name not in GENERATION_SETTINGS:
            raise ConfigError(f"--set {pair!r}: give NAME=VALUE with NAME one of {', '.join(GENERATION_SETTINGS)}")
        out[field_name] = value
    return out


def caught_up(through: dict[int, int], ends: dict[int, int]) -> bool:
    """Every changes partition handled up to the end it had (a partition with no record is handled)."""
    return all(through.get(p, 0) >= end for p, end in ends.items() if end > 0)


def first_generation(settings: Settings) -> GenerationRecord:
    """The record of the generation the settings serve when none is active (the first one)."""
    return GenerationRecord(
        generation=generation_of(settings).fingerprint, state="active", collection=settings.collection,
        consumer_group_prefix=settings.consumer_group_prefix,
        settings=generation_settings(settings), at=datetime.now(UTC))


# --- Kafka ----------------------------------------------------------------------------------------

def publish_generation(settings: Settings, record: GenerationRecord, *, active: bool = False) -> None:
    """Write ``record`` (and, when ``active``, the active pointer) to the generations topic, acknowledged."""
    ensure_topics(settings.kafka_access, [settings.topic_generations], partitions=1,
                  replication=settings.topic_replication, compacted=[settings.topic_generations])
    producer = KafkaProducer(**settings.kafka_access.kafka_python(), acks="all")
    try:
        value = record.model_dump_json().encode()
        futures = [producer.send(settings.topic_generations, key=generation_key(record.generation), value=value)]
        if active:
            futures.append(producer.send(settings.topic_generations, key=ACTIVE_KEY, value=value))
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()


class ProgressReader:
    """Follows the applied topic for one generation's progress records and document count."""

    def __init__(self, settings: Settings, generation: str) -> None:
        self._generation = generation
        self._prefixes = generation_prefixes(generation)  # of its document and progress record keys
        self._consumer = KafkaConsumer(**settings.kafka_access.kafka_python(), enable_auto_commit=False,
                                       group_id=None, client_id="freshet-reindex")
        parts = self._consumer.partitions_for_topic(settings.topic_applied) or set()
        tps = [TopicPartition(settings.topic_applied, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._changes = settings.topic_changes
        self.through: dict[int, int] = {}
        self.documents: set[str] = set()

    def poll(self) -> None:
        for batch in self._consumer.poll(timeout_ms=500, max_records=50_000).values():
            for r in batch:
                if r.value is None:  # a retired run of this generation, tombstoned before it was built again
                    self._forget(r.key)
                    continue
                try:
                    rec = parse_applied(r.value)
                except ValueError:
                    continue
                if rec.generation != self._generation:
                    continue
                if isinstance(rec, ProgressRecord):
                    self.through[rec.partition] = max(rec.through, self.through.get(rec.partition, 0))
                else:
                    self.documents.add(document_key(rec.tenant, rec.doc_id))

    def _forget(self, key: bytes | None) -> None:
        text = (key or b"").decode("utf-8", "replace")
        doc, progress = self._prefixes
        if text.startswith(progress) and text[len(progress):].isdigit():
            self.through.pop(int(text[len(progress):]), None)
        elif text.startswith(doc):
            self.documents.discard(text[len(doc):])

    def ends(self) -> dict[int, int]:
        """The changes topic's end offsets now."""
        parts = self._consumer.partitions_for_topic(self._changes) or set()
        tps = [TopicPartition(self._changes, p) for p in parts]
        return {tp.partition: off for tp, off in self._consumer.end_offsets(tps).items()}

    def close(self) -> None:
        self._consumer.close()


# --- builders -------------------------------------------------------------------------------------

def _run_dir(settings: Settings, generation: str) -> Path:
    return settings.home / "reindex" / generation


def start_builders(target: Settings, count: int) -> list[int]:
    """Start ``count`` indexers of the target generation (or find them running: a resumed reindex);
    the web ports they answer on."""
    ports = []
    run = _run_dir(target, target.generation)
    for i in range(1, count + 1):
        pidfile, portfile = run / f"indexer-{i}.pid", run / f"indexer-{i}.port"
        if procs.read_pid(pidfile) is not None and portfile.exists():
            ports.append(int(portfile.read_text()))
            continue
        port = procs.free_port()
        env = {**os.environ, **target.as_env(), "FRESHET_INDEXER_WEB_PORT": str(port), "PYTHONUNBUFFERED": "1",
               "FRESHET_WORKER_INSTANCE": f"reindex-{target.generation}-{i}", "FRESHET_INDEXER_URL": ""}
        procs.spawn([sys.executable, "-m", "freshet.cli", "worker", "indexer"], log=run / f"indexer-{i}.log",
                    pidfile=pidfile, env=env)
        portfile.write_text(str(port))
        ports.append(port)
    return ports


def stop_builders(settings: Settings, generation: str) -> None:
    run = _run_dir(settings, generation)
    procs.stop_all(sorted(run.glob("indexer-*.pid")), timeout=45)


def _check_builders(settings: Settings, generation: str) -> None:
    run = _run_dir(settings, generation)
    for pidfile in sorted(run.glob("indexer-*.pid")):
        if procs.read_pid(pidfile) is None:
            raise FreshetError(f"the indexer building generation {generation} stopped; its log ends:\n"
                               + procs.log_tail(pidfile.with_suffix(".log")))


def builder_stats(ports: Sequence[int]) -> tuple[int, int]:
    """(chunks embedded, chunks reused) over the builders' /stats pages (0, 0 where one does not answer)."""
    embedded = reused = 0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:  # noqa: S310 - local
                stats: dict[str, Any] = json.loads(resp.read())
        except OSError:
            continue
        embedded += int(stats.get("chunks_embedded", 0))
        reused += int(stats.get("chunks_reused", 0))
    return embedded, reused


# --- the reindex ----------------------------------------------------------------------------------

def run_reindex(settings: Settings, overrides: dict[str, str], *, builders: int = 1, switch: bool = True,
                timeout: float | None = None, progress: bool = True) -> ReindexReport:
    """Build the generation ``overrides`` make from the active one, switch to it and retire the old."""
    started = time.monotonic()
    active, known = read_generations(settings)
    current = adopt(settings, "indexer", active)
    old = active or first_generation(current)
    target, record = generation_record(current, dict(overrides), names=settings, state="building",
                                       at=datetime.now(UTC), replaces=old.collection)
    report = ReindexReport(record.generation, record.collection, old.collection)
    if record.generation == old.generation:
        report.notes.append(f"these settings make the active generation {old.generation}: nothing to do")
        return report
    if generation_of(current).vectors_compatible(generation_of(target)):
        target = target.model_copy(update={"reuse_vectors_from": old.collection})
    earlier = known.get(record.generation)
    if earlier is not None and earlier.state == "retired":  # built, switched to and away from before
        removed = forget_generation(settings, earlier)
        report.notes.append(f"generation {record.generation} was retired before: built again from scratch "
                            f"(removed {', '.join(removed) or 'nothing'})")
    publish_generation(settings, record)
    ports = start_builders(target, builders)
    log.info("reindex_building", generation=record.generation, collection=record.collection,
             previous=old.collection, builders=len(ports), reuse_vectors_from=target.reuse_vectors_from or None)
    reader = ProgressReader(settings, record.generation)
    try:
        _wait_caught_up(settings, reader, record.generation, started, timeout, progress)
        report.documents = len(reader.documents)
    finally:
        reader.close()
    report.chunks_embedded, report.chunks_reused = builder_stats(ports)
    report.seconds = time.monotonic() - started
    if not switch:
        report.notes.append(f"built; not switched (its indexers keep it current): freshet reindex "
                            f"{' '.join(f'--set {k}={v}' for k, v in overrides.items())} switches")
        return report
    publish_generation(settings, record.model_copy(update={"state": "active", "at": datetime.now(UTC)}), active=True)
    report.switched = True
    log.info("reindex_switched", generation=record.generation, collection=record.collection)
    if not _restart_local_indexers(settings):  # the old indexers run elsewhere: they would write the old one again
        report.notes.append(
            "no local stack indexers to restart: the builders keep the new generation current. Restart your "
            f"indexers (they adopt the active generation), stop the builders (pid files in "
            f"{_run_dir(settings, record.generation)}), then delete the old collection {old.collection}")
        report.seconds = time.monotonic() - started
        return report
    stop_builders(settings, record.generation)
    _grace(settings.generation_grace_seconds, progress)
    report.notes += _drop(settings, old)
    report.dropped = True
    report.seconds = time.monotonic() - started
    return report


def _wait_caught_up(settings: Settings, reader: ProgressReader, generation: str, started: float,
                    timeout: float | None, progress: bool) -> None:
    bar = tqdm(desc=f"generation {generation}", unit="event", disable=not progress)
    try:
        while True:
            _check_builders(settings, generation)
            ends = reader.ends()
            reader.poll()
            done = sum(min(reader.through.get(p, 0), end) for p, end in ends.items())
            bar.total = sum(ends.values())
            bar.n = done
            bar.set_postfix(documents=len(reader.documents))
            bar.refresh()
            if caught_up(reader.through, ends):
                return
            if timeout is not None and time.monotonic() - started > timeout:
                raise FreshetError(f"generation {generation} did not catch up within {timeout:.0f} s "
                                   f"({done} of {sum(ends.values())} events); run freshet reindex again to resume")
    finally:
        bar.close()


def _restart_local_indexers(settings: Settings) -> bool:
    """Restart the local stack's running indexers, so they adopt the active generation; False when none run."""
    from ops.stack import Stack

    return bool(Stack(settings).restart_workers("indexer"))


def _grace(seconds: float, progress: bool) -> None:
    for _ in tqdm(range(int(seconds)), desc="grace before the old generation is deleted", unit="s",
                  disable=not progress):
        time.sleep(1)
    time.sleep(seconds - int(seconds))


def _drop(settings: Settings, old: GenerationRecord) -> list[str]:
    """Delete the old generation's collection, mark it retired, then remove its footprint in Kafka
    (:func:`freshet.retire.forget_generation`); return notes on what could not be removed."""
    from workers.weaviate_store import client_for

    client = client_for(settings)
    try:
        client.collections.delete(old.collection)
    finally:
        client.close()
    publish_generation(settings, old.model_copy(update={"state": "retired", "at": datetime.now(UTC)}))
    log.info("reindex_retired", generation=old.generation, collection=old.collection)
    try:
        forget_generation(settings, old)
    except FreshetError as exc:  # the switch is done; a rebuild of this generation removes it first
        log.warning("generation_footprint_left", generation=old.generation, error=str(exc))
        return [f"the retired generation {old.generation}'s consumer groups/topics were not all removed: {exc}"]
    return []


def status_lines(settings: Settings) -> list[str]:
    """``freshet reindex --status``: the active generation, every known one, and a building one's progress."""
    active, known = read_generations(settings)
    lines = [f"active: {active.generation} ({active.collection})" if active is not None
             else f"active: the first generation ({settings.collection}; none switched to yet)"]
    for gen, rec in sorted(known.items(), key=lambda kv: kv[1].at):
        changed = {k: v for k, v in rec.settings.items() if getattr(settings, k) != v}
        lines.append(f"  {gen}  {rec.state:<8} {rec.collection}  since {rec.at:%Y-%m-%d %H:%M:%S}  {changed or ''}")
        if rec.state == "building":
            reader = ProgressReader(settings, gen)
            try:
                ends = reader.ends()
                for _ in range(6):
                    reader.poll()
                done = sum(min(reader.through.get(p, 0), e) for p, e in ends.items())
                lines.append(f"    {done} of {sum(ends.values())} events handled, {len(reader.documents)} documents"
                             f"{' (caught up)' if caught_up(reader.through, ends) else ''}")
            finally:
                reader.close()
    return lines
