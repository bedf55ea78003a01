"""Dead letters as records to look at: read, ordered, grouped, found by position.

:func:`from_record` reads a dead letter's headers (contract in :mod:`schemas.deadletter`),
:func:`group_letters` summarises them by reason and source topic, and :func:`resolve_position` finds
one by ``PARTITION:OFFSET`` (or a bare offset where that is unambiguous). Pure: ``freshet dlq``
(:mod:`freshet.dlq`) reads the topic, :mod:`workers.dead_letter_replay` plans what to publish again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from freshet.errors import FreshetError
from schemas.deadletter import (
    ERROR,
    REASON,
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


def header_text(raw: bytes | None) -> str:
    """A header value as text (None reads as empty; bytes that are not UTF-8 as replacement characters)."""
    return (raw or b"").decode("utf-8", "replace")


def _int(raw: bytes | None) -> int:
    try:
        return int(header_text(raw))
    except ValueError:
        return -1


def from_record(record: Any) -> DeadLetter:
    """A :class:`DeadLetter` of a kafka-python ``ConsumerRecord`` (missing headers read as empty)."""
    headers: Headers = tuple((str(k), bytes(v or b"")) for k, v in (record.headers or []))
    named = dict(headers)
    ts = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp and record.timestamp > 0 else None
    return DeadLetter(
        partition=record.partition, offset=record.offset, timestamp=ts, key=record.key, value=record.value,
        headers=headers, reason=header_text(named.get(REASON)) or "unknown", error=header_text(named.get(ERROR)),
        source_topic=header_text(named.get(SOURCE_TOPIC)), source_partition=_int(named.get(SOURCE_PARTITION)),
        source_offset=_int(named.get(SOURCE_OFFSET)), worker=header_text(named.get(WORKER)),
        truncated=header_text(named[TRUNCATED]) if TRUNCATED in named else None,
        replay_of=header_text(named[REPLAY_OF]) if REPLAY_OF in named else None)


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
