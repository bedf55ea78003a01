"""A retired generation's footprint in Kafka: removed when it is retired, and before it is built again.

A retired generation's consumer groups hold positions at the end of the changes topic, its state
table says every chunk of it is written, and its progress records on the applied topic say how far it
got. Building the same fingerprint again (a setting tried, then reverted: A -> B -> C -> B) on those
would resume at the end over a new, empty collection and switch to it at once. So retiring a
generation deletes its indexers' consumer groups and Faust topics and tombstones its applied and
progress records, and removes the table stores of its indexers under this home
(``<home>/workers/*/<app id>``); a build of a fingerprint whose record says ``retired`` does the same
first (a retirement cut short, or one from before this was done). Indexers that ran that generation on
other machines keep their stores: Faust refuses to start on a store ahead of its changelog, so delete
their data directory before they run it again (docs/reindex.md).

The first generation (the configured consumer-group prefix, shared with the query workers and the
Debezium bridge) loses only its indexers' group and topics, by exact name; its applied records carry
no generation in their keys and stay, skipped by every reader (docs/reindex.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog
from kafka.errors import KafkaError

from freshet.client import producer, read_to_end
from freshet.errors import TransientError
from freshet.settings import Settings
from schemas.applied import generation_prefixes
from schemas.generations import GenerationRecord
from workers.kafka_admin import delete_footprint
from workers.topology import indexer_footprint

log = structlog.get_logger(__name__)


def forget_generation(settings: Settings, record: GenerationRecord) -> list[str]:
    """Delete ``record``'s indexer consumer groups and Faust topics and tombstone its records on the
    applied topic; return what was removed (``settings``: the configured, not an adopted, names).
    Raises :class:`freshet.errors.ConfigError` while something still consumes with its groups."""
    groups, topics = indexer_footprint(record.consumer_group_prefix)
    removed = delete_footprint(settings.kafka_access, groups, topics)
    for app_id in groups:  # the local workers' table stores (Faust refuses a store ahead of its changelog)
        for store in sorted(Path(settings.home, "workers").glob(f"*/{app_id}")):
            shutil.rmtree(store, ignore_errors=True)
            removed.append(str(store))
    if record.consumer_group_prefix != settings.consumer_group_prefix:  # not the first generation
        count = tombstone_applied(settings, record.generation)
        if count:
            removed.append(f"{count} applied/progress records")
    log.info("generation_forgotten", generation=record.generation, removed=removed)
    return removed


def tombstone_applied(settings: Settings, generation: str) -> int:
    """Tombstone every live record of ``generation`` on the applied topic (each in its own partition,
    the topic being compacted per partition); return how many."""
    prefixes = tuple(p.encode() for p in generation_prefixes(generation))
    live: dict[tuple[int, bytes], bool] = {}
    for r in read_to_end(settings.kafka_access, settings.topic_applied):
        if r.key is not None and r.key.startswith(prefixes):
            live[(r.partition, r.key)] = r.value is not None
    todo = [k for k, alive in live.items() if alive]
    if not todo:
        return 0
    out = producer(settings.kafka_access, linger_ms=20)
    try:
        futures = [out.send(settings.topic_applied, key=key, value=None, partition=p) for p, key in todo]
        for f in futures:
            f.get(timeout=30)
    except KafkaError as exc:
        raise TransientError(f"tombstoning generation {generation}'s applied records failed: {exc}") from exc
    finally:
        out.close()
    return len(todo)
