"""Relayout: what moving a deployment to another partition count copies, as pure functions.

A document's indexer state lives in the state-changelog partition its change events arrive on,
so the partition count of a running layout cannot change in place (Kafka would move keys). The
relayout builds a new layout (new changes topic, state changelog and applied topic) from the old
one, with the old indexers drained and stopped, and embeds nothing again:

* each document's **state** goes to ``partition_of(key, partitions)``, where the producers' default
  partitioner will put its next events; its ``offset`` becomes -1, since no record of the new
  changes topic decided it (copies and newer events are then told apart by version alone);
* each document's latest **applied record** goes to that partition of the new applied topic;
* the **change event** that decided each state is copied to the new changes topic (a deleted
  document as an explicit ``op: delete`` at its version, never as a tombstone, which would apply
  whatever its version), so ``freshet verify`` and replays know every document; the new indexer
  finds each copy no newer than the state and skips it as stale.

Positions (``\\x00position/<p>``) and progress records (``\\x00progress/<p>``) are not copied: they
are offsets of the old changes topic. A state or applied record is not copied when the new layout
holds its key at the same version or later, a change event when the new changes topic has any
record of its document (an earlier run, or producers already publishing there: only newer
versions), so a second run adds nothing and never takes a document back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka.partitioner.default import murmur2

from schemas.change import ChangeEvent, split_key
from workers.delivery import POSITION_PREFIX
from workers.planning import DocState
from workers.topology import state_changelog

COPIED_HEADER = "freshet.copied-from"
"""Header of every record the relayout writes: ``<topic>/<partition>/<offset>`` of its original."""


class LogRecord(Protocol):
    """A record read from Kafka (kafka-python's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int | None:
        """Milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The topics a deployment's partition count lays out (see docs/operations.md, Partitions)."""

    group_prefix: str
    """FRESHET_CONSUMER_GROUP_PREFIX: names the consumer groups and the state changelog."""
    changes: str
    applied: str
    partitions: int

    @property
    def state_changelog(self) -> str:
        return state_changelog(self.group_prefix)

    @property
    def indexer_group(self) -> str:
        """The indexers' consumer group (Faust app id ``<prefix>-indexer``)."""
        return f"{self.group_prefix}-indexer"

    def clashes(self, other: Layout) -> list[str]:
        """Topics this layout shares with ``other`` (a relayout writes only to topics of its own)."""
        mine = {self.changes, self.state_changelog, self.applied}
        return sorted(mine & {other.changes, other.state_changelog, other.applied})


@dataclass(frozen=True, slots=True)
class Copy:
    """One record to write to the new layout."""

    key: bytes
    value: bytes
    partition: int
    source: str
    """Where it comes from (``<topic>/<partition>/<offset>``), for :data:`COPIED_HEADER`."""
    timestamp: int | None = None
    """The original's timestamp (ms), kept for a change event: it is the event time of one without any."""


@dataclass
class Plan:
    """Everything one run writes, and what it leaves as it is."""

    states: list[Copy] = field(default_factory=list)
    applied: list[Copy] = field(default_factory=list)
    changes: list[Copy] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=lambda: {"states": 0, "applied": 0, "changes": 0})
    """Keys the new layout already holds at the same version or later (an earlier run, producers)."""
    missing: list[str] = field(default_factory=list)
    """Documents whose deciding change event is no longer on the old changes topic (retention): their
    state and applied record are copied; ``freshet verify`` misses their events, as on the old layout."""

    def summary(self) -> dict[str, int]:
        return {"states_copied": len(self.states), "applied_copied": len(self.applied),
                "changes_copied": len(self.changes), "states_kept": self.kept["states"],
                "applied_kept": self.kept["applied"], "changes_kept": self.kept["changes"],
                "changes_missing": len(self.missing)}


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``key`` (murmur2 of its UTF-8
    bytes, as the Java client, kafka-python and librdkafka's ``murmur2_random`` compute it; not
    librdkafka's default ``consistent_random``)."""
    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def place(record: LogRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def latest(records: Iterable[LogRecord]) -> dict[bytes, LogRecord]:
    """Each key's last record, as compaction keeps it, from ``records`` in offset order within each
    partition (as a consumer reads them; partitions may interleave: a key lives in one partition of
    freshet's topics). A key whose last record is a tombstone (null value) is absent, and so are
    records without a key. Only the latest records stay in memory, not the topic."""
    out: dict[bytes, LogRecord] = {}
    for r in records:
        if r.key is None:
            continue
        if r.value is None:
            out.pop(r.key, None)
        else:
            out[r.key] = r
    return out


def states_of(changelog: Mapping[bytes, LogRecord]) -> dict[str, tuple[LogRecord, DocState]]:
    """Document key -> (record, state) of the latest records of a state changelog (keys and values
    are JSON, as Faust's table serializers write them); the delivery guard's positions are left out."""
    out: dict[str, tuple[LogRecord, DocState]] = {}
    for raw_key, r in changelog.items():
        key = json.loads(raw_key)
        if isinstance(key, str) and not key.startswith(POSITION_PREFIX) and r.value is not None:
            out[key] = (r, DocState.model_validate_json(r.value))
    return out


def positions_of(changelog: Mapping[bytes, LogRecord]) -> dict[int, int]:
    """Changes partition -> the indexer's position (the offset after the last record it handled)."""
    out: dict[int, int] = {}
    for raw_key, r in changelog.items():
        key = json.loads(raw_key)
        if isinstance(key, str) and key.startswith(POSITION_PREFIX) and r.value is not None:
            out[int(key.removeprefix(POSITION_PREFIX))] = int(json.loads(r.value))
    return out


def lag_problems(positions: Mapping[int, int], bounds: Mapping[int, tuple[int, int]]) -> list[str]:
    """Partitions of the old changes topic the indexers have not handled to the end; ``bounds`` is
    partition -> (log start, end offset). An empty partition needs no position."""
    out = []
    for p, (start, end) in sorted(bounds.items()):
        at = positions.get(p)
        if (at is None and end > start) or (at is not None and at < end):
            out.append(f"partition {p}: handled up to {at if at is not None else 'nothing'}, the log ends at "
                       f"{end} ({end - (at if at is not None else start)} record(s) not yet handled)")
    return out


def moved_state(raw: bytes, partition: int) -> bytes:
    """A state record's value for the new layout: ``partition`` set to the new one, ``offset`` to -1
    (no record of the new changes topic decided it); every other field as it was."""
    value: dict[str, Any] = json.loads(raw)
    value.update(partition=partition, offset=-1)
    return json.dumps(value).encode()


def moved_applied(raw: bytes, partition: int) -> bytes:
    """A document's applied record for the new layout: source partition the new one, source offset -1
    (progress records are not moved: see :func:`version_of_applied`)."""
    value: dict[str, Any] = json.loads(raw)
    value.update(source_partition=partition, source_offset=-1)
    return json.dumps(value).encode()


def deciding_change(key: str, state: DocState, original: bytes | None) -> bytes | None:
    """The change event that stands for a document's state on the new changes topic: its original
    upsert (``original``, the record at the state's place) or, for a deleted document, an explicit
    delete at the state's version (stale against the copied state, unlike a tombstone). None when
    the original is gone or does not name this document at most this version."""
    tenant, doc_id = split_key(key)
    if state.deleted:
        return ChangeEvent(doc_id=doc_id, tenant=tenant, op="delete", version=state.version) \
            .model_dump_json(exclude_none=True).encode()
    if original is None:
        return None
    try:
        event = ChangeEvent.model_validate_json(original)
    except ValueError:
        return None
    return original if event.key == key and event.op == "upsert" and event.version <= state.version else None


def version_of_applied(raw: bytes | None) -> int:
    """The version an applied record names (-1 for none or for a progress record)."""
    if raw is None:
        return -1
    value = json.loads(raw)
    return int(value.get("version", -1)) if isinstance(value, dict) and value.get("kind") != "progress" else -1


class Originals:
    """Collects, from a scan of the old changes topic, the upsert that decided each live state: the
    record at the state's place or, for a state a relayout wrote (offset -1), the last upsert of the
    document at the state's version."""

    def __init__(self, states: Mapping[str, tuple[LogRecord, DocState]]) -> None:
        live = [(key, st) for key, (_, st) in states.items() if not st.deleted]
        self._by_place = {(st.partition, st.offset): key for key, st in live if st.offset >= 0}
        self._unplaced = {key.encode(): (key, st.version) for key, st in live if st.offset < 0}
        self.found: dict[str, LogRecord] = {}

    def offer(self, record: LogRecord) -> None:
        """Look at one record of the old changes topic (in any order)."""
        key = self._by_place.get((record.partition, record.offset))
        if key is not None:
            self.found[key] = record
            return
        wanted = self._unplaced.get(record.key) if record.key is not None else None
        if wanted is None or record.value is None:
            return
        try:
            event = ChangeEvent.model_validate_json(record.value)
        except ValueError:
            return
        key, version = wanted
        previous = self.found.get(key)
        if event.op == "upsert" and event.version == version and (previous is None or previous.offset < record.offset):
            self.found[key] = record


@dataclass(frozen=True)
class Existing:
    """What the new layout already holds (an earlier run's copies, or producers' new events)."""

    states: Mapping[str, int] = field(default_factory=dict)
    """Document key -> version of its state on the new state changelog."""
    applied: Mapping[bytes, int] = field(default_factory=dict)
    """Record key -> version of its latest applied record on the new applied topic."""
    changes: frozenset[bytes] = frozenset()
    """Keys with any record on the new changes topic."""


def plan(states: Mapping[str, tuple[LogRecord, DocState]], applied: Mapping[bytes, LogRecord],
         originals: Mapping[str, LogRecord], partitions: int, existing: Existing) -> Plan:
    """The copies that bring the new layout (``partitions``) up to the old one's latest ``states``
    and ``applied`` records (both as :func:`latest` leaves them), given the deciding ``originals``
    (:class:`Originals`) and what the new layout already holds, which always wins."""
    out = Plan()
    for key, (record, state) in sorted(states.items()):
        _plan_document(out, key, record, state, originals.get(key), partitions, existing)
    for raw_key, record in sorted(applied.items()):
        version = version_of_applied(record.value)
        if record.value is None or version < 0:
            continue  # a progress record: an offset of the old changes topic
        if existing.applied.get(raw_key, -1) >= version:
            out.kept["applied"] += 1
            continue
        p = partition_of(raw_key.decode("utf-8"), partitions)
        out.applied.append(Copy(raw_key, moved_applied(record.value, p), p, place(record)))
    return out


def _plan_document(out: Plan, key: str, record: LogRecord, state: DocState, original: LogRecord | None,
                   partitions: int, existing: Existing) -> None:
    """Add one document's state and deciding change event to ``out`` unless the new layout has them."""
    p = partition_of(key, partitions)
    if existing.states.get(key, -1) >= state.version:
        out.kept["states"] += 1
    elif record.key is not None and record.value is not None:
        out.states.append(Copy(record.key, moved_state(record.value, p), p, place(record)))
    if key.encode() in existing.changes:
        out.kept["changes"] += 1
        return
    change = deciding_change(key, state, original.value if original is not None else None)
    if change is None:
        out.missing.append(key)
    else:
        source = original or record
        out.changes.append(Copy(key.encode(), change, p, place(source), original.timestamp if original else None))
