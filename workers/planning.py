"""Change planning: what a document's new version costs, as a pure function of the old state.

The indexer keeps one :class:`DocState` per document (in a Faust table backed by its changelog
topic). For a micro-batch, :func:`winning_event` folds a document's events into the one that
decides its new state (stale versions are skipped and counted), and :func:`plan_change` diffs
that event's chunks against the state: chunks whose id already exists are neither embedded nor
rewritten, new ids are embedded (or taken from the embedding cache), vanished ids are deleted,
and a change of title or metadata alone updates properties without embedding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.change import ChangeEvent
from workers.chunking import Chunk
from workers.ids import chunk_ids


class DocState(BaseModel):
    """What the index holds of one document (the value of the indexer's state table)."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(description="The highest version applied; lower or equal versions are stale.")
    deleted: bool = Field(False, description="The document was deleted at that version.")
    chunk_ids: list[str] = Field(default_factory=list, description="Stored chunk ids, in document order.")
    path_hashes: list[str] = Field(default_factory=list, description="Each chunk's heading-path hash.")
    props_hash: str = Field("", description="Hash of the properties that do not affect vectors.")
    partition: int = Field(-1, description="Changes partition of the event that decided this state.")
    offset: int = Field(-1, description="Its offset: a replay of it or of anything before it is stale.")
    pending_delete: list[str] = Field(default_factory=list, description="Chunk ids of the previous version, "
                                      "deleted only after the applied record is out (then cleared).")
    pending_sweep: bool = Field(False, description="Also delete every other chunk of the document (its prior "
                                "state was unknown), after the applied record.")


@dataclass(frozen=True, slots=True)
class Sourced:
    """An event with its place in the topic; ``tombstone`` for a null-valued record."""

    event: ChangeEvent
    partition: int
    offset: int
    timestamp: datetime | None = None
    """The Kafka record timestamp (the event time when the event has none)."""
    tombstone: bool = False


@dataclass(frozen=True)
class Plan:
    """The writes that bring one document from its stored state to its new version."""

    action: Literal["write", "delete", "noop"]
    state: DocState
    embed: list[tuple[str, Chunk]] = field(default_factory=list)
    """New chunks: (id, chunk) to embed (or fetch from the cache) and insert."""
    update: list[tuple[str, Chunk]] = field(default_factory=list)
    """Kept chunks whose title, metadata or heading path changed: properties only, no embedding."""
    delete: list[str] = field(default_factory=list)
    """Ids of chunks that are gone."""
    kept: int = 0
    """Chunks that stay as they are: not embedded, not rewritten."""


def props_hash(event: ChangeEvent) -> str:
    """Hash of what is stored beside each chunk but does not change its vector."""
    blob = json.dumps([event.title, event.tenant, event.metadata], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def winning_event(prev: DocState | None, events: Sequence[Sourced]) -> tuple[Sourced | None, int]:
    """Fold a document's events of one batch (in offset order) into the one to apply.

    Returns the event that decides the new state (None if all were stale) and the number of
    stale events skipped. A version not above the highest seen so far is stale; a tombstone
    always applies and keeps the version, so a later re-create needs a higher version. A replayed
    event (at or before the offset that decided the stored state) is stale too, tombstones
    included: replays happen (crash, read-back) and must change nothing.
    """
    version = prev.version if prev is not None else -1
    winner: Sourced | None = None
    stale = 0
    for se in sorted(events, key=lambda s: s.offset):
        if prev is not None and se.partition == prev.partition and se.offset <= prev.offset:
            stale += 1
        elif se.tombstone:
            winner = se
        elif se.event.version <= version:
            stale += 1
        else:
            version = se.event.version
            winner = se
    return winner, stale


def highest_version(prev: DocState | None, events: Sequence[Sourced]) -> int:
    """The highest version the stored state and the batch's non-replayed upserts have shown: the
    version a document's new state keeps, even when a tombstone after them decides it (otherwise a
    stale upsert arriving later would bring the deleted document back)."""
    seen = [se.event.version for se in events if not se.tombstone
            and not (prev is not None and se.partition == prev.partition and se.offset <= prev.offset)]
    return max([prev.version if prev is not None else -1, *seen])


def plan_change(prev: DocState | None, se: Sourced, chunks: Sequence[Chunk], *, floor: int = -1,
                superseded: bool = False) -> Plan:
    """Diff the new version's chunks against the stored state (``chunks`` empty for a delete).

    ``floor`` is the highest version seen so far (:func:`highest_version`): the new state's version
    is never below it. ``superseded``: the batch also held a live (not stale) earlier version of the
    document. A batch that died after writing that version's chunks but before storing its state (a
    kill -9, a partition moved mid-batch) left chunks no state lists, so the new state sweeps the
    document by filter, keeping its own chunks.
    """
    ev = se.event
    old_ids = prev.chunk_ids if prev is not None and not prev.deleted else []
    version = max(ev.version, prev.version if prev is not None else -1, floor)
    carried = prev.pending_delete if prev is not None else []
    if ev.op == "delete":
        doomed = list(dict.fromkeys([*carried, *old_ids]))
        state = DocState(version=version, deleted=True, partition=se.partition, offset=se.offset,
                         pending_delete=doomed, pending_sweep=True)
        return Plan("delete" if old_ids or prev is None else "noop", state, delete=list(old_ids))
    ids = chunk_ids(ev.tenant, ev.doc_id, chunks)
    paths = [c.path_hash for c in chunks]
    phash = props_hash(ev)
    old_paths = dict(zip(old_ids, prev.path_hashes, strict=False)) if prev is not None else {}
    new = set(ids)
    props_changed = prev is not None and not prev.deleted and prev.props_hash != phash
    embed: list[tuple[str, Chunk]] = []
    update: list[tuple[str, Chunk]] = []
    for cid, c in zip(ids, chunks, strict=True):
        if cid not in old_paths:
            embed.append((cid, c))
        elif props_changed or old_paths[cid] != c.path_hash:
            update.append((cid, c))
    delete = [cid for cid in old_ids if cid not in new]
    first_sight = prev is None or prev.deleted
    state = DocState(version=version, chunk_ids=ids, path_hashes=paths, props_hash=phash,
                     partition=se.partition, offset=se.offset,
                     pending_delete=[c for c in dict.fromkeys([*carried, *delete]) if c not in new],
                     pending_sweep=first_sight or superseded or (prev is not None and prev.pending_sweep))
    action: Literal["write", "noop"] = "write" if embed or update or delete or prev is None else "noop"
    return Plan(action, state, embed=embed, update=update, delete=delete,
                kept=len(ids) - len(embed) - len(update))
