"""``freshet dlq``: list, show and replay the records on the dead-letter topic.

The pure part: :func:`from_record` reads a dead letter's headers (contract in
:mod:`schemas.deadletter`), :func:`group_letters` summarises them by reason and source topic,
:func:`resolve_position` finds one by ``PARTITION:OFFSET`` (or a bare offset where that is
unambiguous), :func:`plan_replay` picks what to publish again and why the rest is skipped, and
:func:`replay_record` builds the record to publish. The I/O part reads the topics with
:func:`freshet.client.read_to_end` and produces with the client's producer, waiting for every ack.

A replay is a change event like any other: the indexer applies it only when its version is above the
applied one (``workers.planning.winning_event``), so a stale one is skipped, and a re-sent one is a
no-op. Replays are also not sent twice: the replay headers already on the changes topic say which
dead letters (and which origins) were replayed before.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from freshet.errors import FreshetError, TransientError
from freshet.settings import Settings
from schemas.deadletter import (
    ERROR,
    REASON,
    REPLAY_DEAD_LETTER,
    REPLAY_OF,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TRUNCATED,
    WORKER,
)

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, its freshet headers read."""

    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    """Every header, the original ones and freshet's, in record order."""
    reason: str
    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    worker: str
    truncated: str | None
    """What was cut to fit the dead-letter topic (None: the record is whole)."""
    replay_of: str | None
    """The origin this record was a replay of (carried from the replayed record), if it was one."""

    @property
    def position(self) -> str:
        """``PARTITION:OFFSET`` on the dead-letter topic."""
        return f"{self.partition}:{self.offset}"

    @property
    def source(self) -> str:
        """``TOPIC:PARTITION:OFFSET`` of the record that was dead-lettered."""
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    @property
    def origin(self) -> str:
        """The first record of a chain of replays: what ``freshet.replay.of`` names."""
        return self.replay_of or self.source

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("freshet.")]


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _int(raw: bytes | None) -> int:
    try:
        return int(_text(raw))
    except ValueError:
        return -1


def from_record(record: Any) -> DeadLetter:
    """A :class:`DeadLetter` of a kafka-python ``ConsumerRecord`` (missing headers read as empty)."""
    headers: Headers = tuple((str(k), bytes(v or b"")) for k, v in (record.headers or []))
    named = dict(headers)
    ts = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp and record.timestamp > 0 else None
    return DeadLetter(
        partition=record.partition, offset=record.offset, timestamp=ts, key=record.key, value=record.value,
        headers=headers, reason=_text(named.get(REASON)) or "unknown", error=_text(named.get(ERROR)),
        source_topic=_text(named.get(SOURCE_TOPIC)), source_partition=_int(named.get(SOURCE_PARTITION)),
        source_offset=_int(named.get(SOURCE_OFFSET)), worker=_text(named.get(WORKER)),
        truncated=_text(named[TRUNCATED]) if TRUNCATED in named else None,
        replay_of=_text(named[REPLAY_OF]) if REPLAY_OF in named else None)


def in_order(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Dead letters in the order they were written (timestamp, then position)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(letters, key=lambda d: (d.timestamp or epoch, d.partition, d.offset))


def sample(raw: bytes | str | None, width: int = 80) -> str:
    """One line of at most ``width`` characters: whitespace collapsed, cut with an ellipsis."""
    text = " ".join((raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Group:
    """The dead letters of one reason from one source topic."""

    reason: str
    source_topic: str
    count: int = 0
    first: str = ""
    """Dead-letter position (``PARTITION:OFFSET``) of the first, and below of the last, in written order."""
    last: str = ""
    first_at: str | None = None
    last_at: str | None = None
    source_offsets: dict[int, list[int]] = field(default_factory=dict)
    """Source partition -> [lowest, highest] source offset."""
    truncated: int = 0
    from_replays: int = 0
    """Dead letters of records that were themselves replays."""
    error_sample: str = ""
    value_sample: str = ""

    def add(self, d: DeadLetter) -> None:
        at = d.timestamp.isoformat() if d.timestamp else None
        if not self.count:
            self.first, self.first_at = d.position, at
            self.error_sample, self.value_sample = sample(d.error, 160), sample(d.value)
        self.count += 1
        self.last, self.last_at = d.position, at
        low, high = self.source_offsets.get(d.source_partition, [d.source_offset, d.source_offset])
        self.source_offsets[d.source_partition] = [min(low, d.source_offset), max(high, d.source_offset)]
        self.truncated += d.truncated is not None
        self.from_replays += d.replay_of is not None


def group_letters(letters: Iterable[DeadLetter]) -> list[Group]:
    """Dead letters by (reason, source topic), largest group first."""
    groups: dict[tuple[str, str], Group] = {}
    for d in in_order(letters):
        groups.setdefault((d.reason, d.source_topic), Group(d.reason, d.source_topic)).add(d)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason, g.source_topic))


def parse_position(spec: str) -> tuple[int | None, int]:
    """``PARTITION:OFFSET`` or a bare ``OFFSET`` (partition None)."""
    m = re.fullmatch(r"\s*(?:(\d+):)?(\d+)\s*", spec)
    if not m:
        raise FreshetError(f"{spec!r} is not a dead-letter position: give PARTITION:OFFSET (e.g. 0:17), "
                           "or OFFSET alone when one partition has it")
    return (int(m[1]) if m[1] is not None else None), int(m[2])


def resolve_position(spec: str, letters: Sequence[DeadLetter], topic: str) -> DeadLetter:
    """The dead letter at ``spec``; a bare offset must name exactly one record of the topic."""
    partition, offset = parse_position(spec)
    found = [d for d in letters if d.offset == offset and partition in (None, d.partition)]
    if not found:
        raise FreshetError(f"no dead letter at {spec!r} on {topic!r} ({len(letters)} record(s); "
                           "`freshet dlq list` shows their positions)")
    if len(found) > 1:
        raise FreshetError(f"offset {offset} is on {len(found)} partitions of {topic!r}: give one of "
                           + ", ".join(d.position for d in found))
    return found[0]


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time (UTC if no zone is given) or a duration ago (``90s``, ``30m``,
    ``2h``, ``7d``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - timedelta(seconds=float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise FreshetError(f"--since {text!r}: give an ISO 8601 time (2026-12-05T10:00:00Z) "
                           "or a duration ago (30m, 2h, 7d)") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Ledger:
    """What the changes topic says was replayed already (from its replay headers)."""

    origins: frozenset[str] = frozenset()
    dead_letters: frozenset[str] = frozenset()

    def replayed(self, d: DeadLetter, dead_letter_topic: str) -> bool:
        return d.origin in self.origins or f"{dead_letter_topic}:{d.position}" in self.dead_letters


def ledger_from(headers_of_records: Iterable[Iterable[tuple[str, bytes]]]) -> Ledger:
    """The :class:`Ledger` of the changes topic's records' headers."""
    origins: set[str] = set()
    letters: set[str] = set()
    for headers in headers_of_records:
        for k, v in headers:
            if k == REPLAY_OF:
                origins.add(_text(v))
            elif k == REPLAY_DEAD_LETTER:
                letters.add(_text(v))
    return Ledger(frozenset(origins), frozenset(letters))


@dataclass(frozen=True)
class Selection:
    """Which dead letters a replay considers (empty sets: all)."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None

    def matches(self, d: DeadLetter) -> bool:
        return ((not self.reasons or d.reason in self.reasons)
                and (not self.source_topics or d.source_topic in self.source_topics)
                and (self.since is None or (d.timestamp is not None and d.timestamp >= self.since)))


#: Why a matching dead letter is not replayed, in the order the summary names them.
SKIPS = ("already_replayed", "truncated", "not_replayable", "duplicate")


@dataclass
class ReplayPlan:
    send: list[DeadLetter] = field(default_factory=list)
    """To publish, in written order."""
    matched: int = 0
    """Dead letters the selection matched."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Matching dead letters not sent, by cause (:data:`SKIPS`)."""


def plan_replay(letters: Iterable[DeadLetter], ledger: Ledger, selection: Selection, *, dead_letter_topic: str,
                replayable: frozenset[str], again: bool = False) -> ReplayPlan:
    """What to replay: matching dead letters from a ``replayable`` source topic, whole (not
    truncated), not replayed before (unless ``again``), one per origin."""
    plan = ReplayPlan()
    origins: set[str] = set()
    for d in in_order(letters):
        if not selection.matches(d):
            continue
        plan.matched += 1
        if d.source_topic not in replayable:
            plan.skipped["not_replayable"] += 1
        elif d.truncated is not None:
            plan.skipped["truncated"] += 1
        elif not again and ledger.replayed(d, dead_letter_topic):
            plan.skipped["already_replayed"] += 1
        elif d.origin in origins:
            plan.skipped["duplicate"] += 1
        else:
            origins.add(d.origin)
            plan.send.append(d)
    return plan


def replay_record(d: DeadLetter, *, dead_letter_topic: str, changes_topic: str,
                  partitions: int) -> dict[str, Any]:
    """The producer arguments that publish ``d`` again: original key, value and non-freshet headers,
    plus the replay headers. A record read from the changes topic goes back to its own partition (the
    one its document's state lives on, whatever partitioner its producer used); one from another
    topic is partitioned by its key."""
    headers = [*d.original_headers, (REPLAY_OF, d.origin.encode()),
               (REPLAY_DEAD_LETTER, f"{dead_letter_topic}:{d.position}".encode())]
    same = d.source_topic == changes_topic and 0 <= d.source_partition < partitions
    return {"key": d.key, "value": d.value, "headers": headers, "partition": d.source_partition if same else None}


def summary_line(plan: ReplayPlan, *, dry_run: bool) -> str:
    skipped = ", ".join(f"{plan.skipped[c]} {c.replace('_', ' ')}" for c in SKIPS if plan.skipped[c])
    verb = "would replay" if dry_run else "replayed"
    return f"dlq replay: {verb} {len(plan.send)} of {plan.matched} matching; skipped: {skipped or 'none'}"


# --- I/O -----------------------------------------------------------------------------------------


def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every record of the dead-letter topic (the whole topic is read: tools, not hot paths)."""
    from freshet.client import read_to_end

    return in_order(from_record(r) for r in read_to_end(settings.kafka_access, settings.topic_dead_letter))


def read_ledger(settings: Settings) -> Ledger:
    """The replay headers on the changes topic (read from its beginning)."""
    from freshet.client import read_to_end

    return ledger_from(r.headers or [] for r in read_to_end(settings.kafka_access, settings.topic_changes))


def publish_replays(settings: Settings, letters: Sequence[DeadLetter], *, progress: bool = True) -> int:
    """Publish each dead letter to the changes topic and wait for every ack; the number sent."""
    from kafka.errors import KafkaError
    from tqdm import tqdm

    from freshet.client import producer as make_producer

    producer = make_producer(settings.kafka_access, linger_ms=5)
    try:
        partitions = len(producer.partitions_for(settings.topic_changes) or ())
        futures = []
        for d in tqdm(letters, desc="replaying", unit="record", disable=not progress):
            rec = replay_record(d, dead_letter_topic=settings.topic_dead_letter,
                                changes_topic=settings.topic_changes, partitions=partitions)
            futures.append(producer.send(settings.topic_changes, **rec))
        producer.flush(timeout=120)
        for fut in futures:
            fut.get(timeout=60)
        return len(futures)
    except KafkaError as exc:
        raise TransientError(f"replay to {settings.topic_changes!r} failed: {exc}; nothing after the failure is "
                             "acknowledged, and running the replay again sends only what is missing") from exc
    finally:
        producer.close()


def show_lines(d: DeadLetter, topic: str) -> list[str]:
    """One dead letter in full: its freshet headers, key, every header decoded, the value
    (pretty-printed when it is JSON)."""
    at = d.timestamp.isoformat() if d.timestamp else "no timestamp"
    lines = [f"dead letter {d.position} of {topic} ({at})",
             f"  reason     {d.reason}", f"  error      {d.error}", f"  source     {d.source}",
             f"  worker     {d.worker}", f"  truncated  {d.truncated or 'no (whole record)'}"]
    if d.replay_of:
        lines.append(f"  replay of  {d.replay_of}")
    lines += [f"key: {_shown(d.key)}", "headers:"] + [f"  {k}: {_shown(v)}" for k, v in d.headers]
    if d.value is None:
        return [*lines, "value: null (a tombstone, or dropped: see truncated)"]
    try:
        body = json.dumps(json.loads(d.value), indent=2, ensure_ascii=False)
        kind = "JSON"
    except (ValueError, RecursionError):
        body, kind = _shown(d.value), "not JSON" + (", cut" if d.truncated else "")
    return [*lines, f"value ({len(d.value):,} bytes, {kind}):", body]


def _shown(raw: bytes | None) -> str:
    if raw is None:
        return "null"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)


def as_json(d: DeadLetter) -> dict[str, Any]:
    return {"position": d.position, "timestamp": d.timestamp.isoformat() if d.timestamp else None,
            "reason": d.reason, "error": d.error, "source": d.source, "worker": d.worker,
            "truncated": d.truncated, "replay_of": d.replay_of, "key": _shown(d.key),
            "headers": [[k, _shown(v)] for k, v in d.headers],
            "value": None if d.value is None else _shown(d.value)}
