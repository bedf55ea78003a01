"""Verification: does the index equal what a fresh load of the latest versions would produce?

Pure functions over three views of the same documents: what the changes topic says (folded to
each document's latest applicable version and re-chunked from scratch), what the indexer's state
table holds, and what Weaviate stores. :func:`compare` lists every difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workers.chunking import Chunk
from workers.ids import chunk_ids
from workers.planning import DocState, Sourced, winning_event


@dataclass(frozen=True)
class Expected:
    """A document as a fresh load of its latest version would store it."""

    version: int
    deleted: bool
    chunk_ids: list[str]
    hashes: dict[str, str]
    """chunk id -> content hash."""
    chunks: list[Chunk] = field(default_factory=list)


@dataclass(frozen=True)
class StoredObject:
    id: str
    key: str
    content_hash: str


def latest_versions(events: Iterable[Sourced]) -> dict[str, Sourced]:
    """Each document's deciding event after replaying ``events`` (in topic order per partition)."""
    state: dict[str, DocState] = {}
    deciding: dict[str, Sourced] = {}
    for se in sorted(events, key=lambda s: (s.partition, s.offset)):
        key = se.event.key
        winner, _ = winning_event(state.get(key), [se])
        if winner is None:
            continue
        prev = state.get(key)
        version = max(winner.event.version, prev.version if prev else -1)
        state[key] = DocState(version=version, deleted=winner.event.op == "delete", partition=winner.partition,
                              offset=winner.offset)
        deciding[key] = winner
    return deciding


def applicable_versions(events: Iterable[Sourced], refused: Callable[[Sourced], bool]) -> dict[str, Sourced]:
    """:func:`latest_versions` without the events the indexer refuses only once it has chunked them
    (``refused``: too many chunks), which leave the state as it was. Only deciding events are checked."""
    todo = list(events)
    while True:
        deciding = latest_versions(todo)
        out = {(se.partition, se.offset) for se in deciding.values() if refused(se)}
        if not out:
            return deciding
        todo = [se for se in todo if (se.partition, se.offset) not in out]


def expected_documents(deciding: Mapping[str, Sourced], chunk: Callable[[Sourced], list[Chunk]]) -> dict[str, Expected]:
    """Fresh chunking of every document's latest version."""
    out: dict[str, Expected] = {}
    for key, se in deciding.items():
        version = se.event.version
        if se.event.op == "delete":
            out[key] = Expected(version, True, [], {})
            continue
        chunks = chunk(se)
        ids = chunk_ids(se.event.tenant, se.event.doc_id, chunks)
        out[key] = Expected(version, False, ids, {i: c.content_hash for i, c in zip(ids, chunks, strict=True)},
                            chunks)
    return out


def compare(expected: Mapping[str, Expected], states: Mapping[str, DocState],
            objects: Sequence[StoredObject]) -> list[str]:
    """Every difference between the expected index, the indexer's state and Weaviate."""
    problems: list[str] = []
    by_doc: dict[str, dict[str, str]] = {}
    for obj in objects:
        if obj.id in by_doc.setdefault(obj.key, {}):
            problems.append(f"{obj.key!r}: object {obj.id} stored twice")
        by_doc[obj.key][obj.id] = obj.content_hash
    for key, exp in sorted(expected.items()):
        st = states.get(key)
        if st is None:
            problems.append(f"{key!r}: no indexer state (expected version {exp.version})")
        elif st.deleted != exp.deleted or st.chunk_ids != exp.chunk_ids:
            problems.append(f"{key!r}: indexer state (deleted={st.deleted}, {len(st.chunk_ids)} chunks) differs "
                            f"from a fresh chunking (deleted={exp.deleted}, {len(exp.chunk_ids)} chunks)")
        stored = by_doc.pop(key, {})
        # the old chunks of a version applied less than FRESHET_DELETE_GRACE_SECONDS ago are still
        # there by design, listed in the state's pending deletes (a query worker hides them)
        awaiting = set(st.pending_delete) if st is not None else set()
        missing = set(exp.chunk_ids) - set(stored)
        extra = set(stored) - set(exp.chunk_ids) - awaiting
        if missing or extra:
            problems.append(f"{key!r}: Weaviate has {len(extra)} unexpected and lacks {len(missing)} chunks")
        bad = [i for i, h in stored.items() if i in exp.hashes and exp.hashes[i] != h]
        if bad:
            problems.append(f"{key!r}: {len(bad)} chunks hold other content than their id says")
    problems += [f"{key!r}: {len(ids)} chunks in Weaviate of a document no event created"
                 for key, ids in by_doc.items() if ids]
    return problems
