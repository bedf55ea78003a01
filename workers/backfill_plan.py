"""What a backfill publishes, as pure functions of its inputs and of the changes topic.

* An :class:`Item` is one input in publishing order (a file of a directory, a line of a JSON-lines
  file), its :data:`Cursor` the position a checkpoint refers to: a file's relative path (POSIX
  separators), or a line number.
* A JSON line (:func:`line_item`) is one object with ``doc_id``, ``content`` and optionally ``title``,
  ``metadata``, ``tenant``, ``content_type``, ``event_id``, ``event_time``; the version is the value
  of the version field (:func:`parse_version`: an integer, or an RFC 3339 time taken in microseconds
  since 1970) or else the line number. A bad line is an item with an error naming file and line.
  Microseconds, the unit of the directories' mtimes too, not nanoseconds: Weaviate returns an ``int``
  property through a float64, exact only below 2**53, so a version in nanoseconds would come back
  rounded in every search hit.
* Every event carries ``metadata.source`` (:data:`SOURCE_FIELD`): that is how :func:`plan_deletes`
  knows which documents of the topic this source published. :func:`latest_by_key` folds the changes
  topic into each document's newest state as the indexer sees it; :func:`plan_upsert` leaves out what
  is unchanged there (its version not above the latest).
* :class:`Acks` holds the sent inputs in order and moves the checkpoint's position past an input once it
  and every input before it are acknowledged.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import ValidationError

from schemas.change import MAX_VERSION, ChangeEvent, split_key
from workers.planning import Sourced

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
SOURCE_FIELD = "source"
#: Fields a JSON line may carry besides the version field (``op`` and ``version`` are the backfill's).
LINE_FIELDS = frozenset({"doc_id", "content", "title", "metadata", "tenant", "content_type", "event_id", "event_time"})

MAX_IN_FLIGHT = 1000
"""Sent inputs awaiting their acknowledgement before :meth:`Acks.add` waits for the oldest."""

Cursor = str | int
"""Where an input sits in the sorted input: a file's relative path, or a line number."""


@dataclass(frozen=True, slots=True)
class Item:
    """One input of a backfill, in publishing order: an event, or why there is none."""

    cursor: Cursor
    key: str | None
    """The document key; None when the input names no document (an unreadable line)."""
    nbytes: int
    event: ChangeEvent | None = None
    error: str | None = None
    """Why it cannot be published, naming the file (and line)."""


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest state of one document on the changes topic."""

    version: int
    deleted: bool
    source: str | None
    """The ``metadata.source`` of the upsert that made it (None for a delete or another producer)."""


def content_type_for(rel: PurePosixPath) -> Literal["text/markdown", "text/plain"]:
    return "text/markdown" if rel.suffix.lower() in MARKDOWN_SUFFIXES else "text/plain"


def parse_version(value: Any) -> int:
    """A version from a JSON value: an integer (or a string of digits) as it is, an RFC 3339 time in
    microseconds since 1970 (UTC), the unit of the directories' mtimes. Raises ValueError saying what is wrong."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither an integer nor an RFC 3339 time") from None
        if at.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (e.g. 'Z' or '+02:00')")
        delta = at - datetime(1970, 1, 1, tzinfo=UTC)
        value = (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is neither an integer nor an RFC 3339 time")
    if not 0 <= value <= MAX_VERSION:
        raise ValueError(f"{value} is outside 0..2**63-1")
    return value


def line_item(n: int, raw: bytes, *, where: str, version_field: str | None, tenant: str | None,
              source: str) -> Item | None:
    """The item of line ``n`` (None for a blank line); a bad line is an item with an error."""
    key: str | None = None
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError(f"a line must be a JSON object, got {type(obj).__name__}")
        if isinstance(obj.get("doc_id"), str):
            key = ChangeEvent(doc_id=obj["doc_id"], op="delete", version=0, tenant=obj.get("tenant", tenant)).key
        version = n
        if version_field is not None:
            if version_field not in obj:
                raise ValueError(f"no {version_field!r} field (--version-field)")
            version = parse_version(obj[version_field] if version_field in LINE_FIELDS else obj.pop(version_field))
        if unknown := sorted(set(obj) - LINE_FIELDS):
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; a line holds "
                             f"{', '.join(sorted(LINE_FIELDS))} (and the --version-field)")
        metadata = obj.pop("metadata", None) or {}
        if metadata.get(SOURCE_FIELD, source) != source:
            raise ValueError(f"metadata.{SOURCE_FIELD} is {metadata[SOURCE_FIELD]!r}: that field names the "
                             f"backfill source ({source!r}, --source)")
        event = ChangeEvent.model_validate({"tenant": tenant, **obj, "op": "upsert", "version": version,
                                            "metadata": {**metadata, SOURCE_FIELD: source}})
    except (ValueError, ValidationError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        if not raw.strip():
            return None
        why = "not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc).replace("\n", " ")
        return Item(n, key, len(raw), error=f"{where}:{n}: {why}")
    return Item(n, event.key, len(raw), event)


def latest_by_key(events: Iterable[Sourced]) -> dict[str, Latest]:
    """The newest state of every document of the changes topic (read in any order): per document,
    in offset order, a higher version replaces the state, a tombstone deletes it keeping its version,
    a version not above the state's is stale (as the indexer sees it)."""
    out: dict[str, Latest] = {}
    for se in sorted(events, key=lambda s: (s.partition, s.offset)):
        ev, prev = se.event, out.get(se.event.key)
        if se.tombstone:
            out[ev.key] = Latest(prev.version if prev else 0, True, None)
        elif prev is None or ev.version > prev.version:
            src = ev.metadata.get(SOURCE_FIELD) if ev.op == "upsert" else None
            out[ev.key] = Latest(ev.version, ev.op == "delete", src if isinstance(src, str) else None)
    return out


def plan_upsert(event: ChangeEvent, latest: Latest | None) -> ChangeEvent | None:
    """The event to publish for ``event``: None when the topic already has this version or a newer one
    (unchanged); one above a delete's version when a deleted document comes back with an older mtime."""
    if latest is None or event.version > latest.version:
        return event
    if latest.deleted:
        return event.model_copy(update={"version": min(latest.version + 1, MAX_VERSION)})
    return None


def plan_deletes(latest: Mapping[str, Latest], present: set[str], source: str) -> list[ChangeEvent]:
    """A delete, one version above the latest, for every live document this source published that is
    not among ``present`` (document keys) now; ordered by key."""
    out = []
    for key, state in sorted(latest.items()):
        if not state.deleted and state.source == source and key not in present:
            tenant, doc_id = split_key(key)
            out.append(ChangeEvent(doc_id=doc_id, tenant=tenant, op="delete",
                                   version=min(state.version + 1, MAX_VERSION)))
    return out


def is_pending(cursor: Cursor, after: Cursor | None) -> bool:
    """The input at ``cursor`` is not covered by a checkpoint at ``after``."""
    if after is None:
        return True
    if isinstance(cursor, int) and isinstance(after, int):
        return cursor > after
    return str(cursor) > str(after)


class Acks:
    """Sent inputs in order; the position moves past an input once it and every input before it are
    acknowledged (acks of different partitions come back in any order). ``save(after, acked)`` is
    called every ``every`` acknowledged events."""

    def __init__(self, save: Callable[[Cursor, int], None], every: int) -> None:
        self._queue: deque[tuple[Cursor, Future[Any] | None]] = deque()
        self._save, self._every = save, every
        self.after: Cursor | None = None
        self.acked = 0
        self._saved_at = 0

    def add(self, cursor: Cursor, fut: Future[Any] | None) -> None:
        """Queue an input (``fut`` None: nothing sent for it, it only moves the position)."""
        self._queue.append((cursor, fut))
        self.drain(block=len(self._queue) > MAX_IN_FLIGHT)

    def drain(self, *, block: bool = False) -> None:
        """Move the position past every acknowledged input at the head; ``block``: wait for the head's
        acknowledgement. A failed publish raises, the position staying before it."""
        while self._queue:
            cursor, fut = self._queue[0]
            if fut is not None:
                if not (block or fut.done()):
                    break
                fut.result(timeout=120)
                self.acked += 1
            self._queue.popleft()
            self.after = cursor
            if self.acked - self._saved_at >= self._every:
                self.save()

    def salvage(self) -> None:
        """After an interruption: keep what was acknowledged (without raising), and save it."""
        while self._queue:
            cursor, fut = self._queue[0]
            if fut is not None:
                if not fut.done() or fut.exception() is not None:
                    break
                self.acked += 1
            self._queue.popleft()
            self.after = cursor
        self.save()

    def save(self) -> None:
        if self.after is not None:
            self._save(self.after, self.acked)
            self._saved_at = self.acked
