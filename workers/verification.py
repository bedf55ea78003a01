"""Verification: does the index equal what a fresh load of the latest versions would produce?

Pure functions over three views of the same documents: what the changes topic says (folded to
each document's latest applicable version and re-chunked from scratch), what the indexer's state
table holds, and what Weaviate stores. :func:`compare` lists every difference, and
:func:`plan_repair` what brings Weaviate back to the documents' applied versions
(``freshet verify --repair``, docs/repair.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.change import split_key
from workers.chunking import Chunk
from workers.ids import chunk_ids
from workers.indexing import title_of
from workers.planning import DocState, Sourced, winning_event
from workers.tenancy import weaviate_tenant


@dataclass(frozen=True)
class Expected:
    """A document as a fresh load of its latest version would store it."""

    version: int
    deleted: bool
    chunk_ids: list[str]
    hashes: dict[str, str]
    """chunk id -> content hash."""
    chunks: list[Chunk] = field(default_factory=list)
    source: Sourced | None = None
    """The event that decides it (what a repair writes from)."""


@dataclass(frozen=True)
class StoredObject:
    id: str
    key: str
    content_hash: str
    shard: str | None = None
    """The Weaviate tenant shard it is in (None without multi-tenancy)."""


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
                            chunks, se)
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


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A chunk of a document's applied version that Weaviate lacks (or holds with other content)."""

    key: str
    id: str
    chunk: Chunk
    source: Sourced
    title: str | None


@dataclass(frozen=True, slots=True)
class Removal:
    """An object Weaviate should not hold: of a deleted or unknown document, an older version, or
    in another tenant's shard."""

    key: str
    id: str
    shard: str | None


@dataclass(frozen=True)
class RepairPlan:
    """What brings Weaviate back to the documents' applied versions, and where each vector comes from."""

    writes: list[Rewrite]
    deletes: list[Removal]
    reuse: dict[str, tuple[str, str | None]]
    """content hash -> (object id, shard) of a stored object whose vector it takes."""
    cached: list[str]
    """content hashes the embedding cache holds."""
    embed: dict[str, str]
    """content hash -> text the model must embed (nothing stores its vector)."""
    basis: dict[str, DocState | None]
    """The state each touched document was planned from (None: the indexer knows no such document)."""
    skipped: list[str] = field(default_factory=list)
    """Documents with drift a repair must not touch, and why."""

    def without(self, keys: Iterable[str]) -> RepairPlan:
        """The plan with no write or delete of documents ``keys`` (whose state moved since planning)."""
        gone = set(keys)
        why = [f"{k!r}: its indexer state changed during the repair" for k in sorted(gone)]
        return RepairPlan([w for w in self.writes if w.key not in gone], [d for d in self.deletes if d.key not in gone],
                          self.reuse, self.cached, self.embed, {k: v for k, v in self.basis.items() if k not in gone},
                          [*self.skipped, *why])


def home_shard(key: str, multi_tenancy: bool) -> str | None:
    """The Weaviate shard a document's chunks belong in (None: the one collection without tenancy)."""
    tenant = split_key(key)[0]
    return weaviate_tenant(tenant) if multi_tenancy and tenant is not None else None


def unrepairable(exp: Expected | None, st: DocState | None) -> str | None:
    """Why a repair must leave this document alone, or None. A repair writes the chunks of the
    version the indexer's state records, so that state must be the fresh chunking of the latest
    version; otherwise the indexer is behind or ahead of this run, or its settings differ."""
    if exp is None:
        return None if st is None else "the indexer has a state the changes topic does not show (newer than this run?)"
    if st is None:
        return f"no indexer state for version {exp.version}: the indexer has not applied it yet (or lost its state)"
    if st.deleted != exp.deleted or (not exp.deleted and (st.version != exp.version or st.chunk_ids != exp.chunk_ids)):
        return (f"the indexer's state (version {st.version}, deleted={st.deleted}) is not the fresh chunking of the "
                f"latest version ({exp.version}, deleted={exp.deleted}): the indexer is not caught up, or its chunking "
                "settings differ from this run's")
    return None


def plan_repair(expected: Mapping[str, Expected], states: Mapping[str, DocState], objects: Sequence[StoredObject],
                *, multi_tenancy: bool = False, cached: Callable[[str], bool] = lambda h: False) -> RepairPlan:
    """Rewrite every chunk of a document's applied version that Weaviate lacks or holds with other
    content (or in another shard), and delete every object that should not be there, for the
    documents whose indexer state equals the fresh chunking of their latest version (others are
    skipped: :func:`unrepairable`). The old chunks a state lists as pending deletes are left to the
    indexer. Vectors come from the embedding cache (``cached``), else from a stored object with the
    same content hash (a kept one first), else from the model."""
    by_doc: dict[str, list[StoredObject]] = defaultdict(list)
    for obj in objects:
        by_doc[obj.key].append(obj)
    writes: list[Rewrite] = []
    deletes: list[Removal] = []
    basis: dict[str, DocState | None] = {}
    skipped: list[str] = []
    for key in sorted(set(expected) | set(by_doc)):
        exp, st, stored = expected.get(key), states.get(key), by_doc.get(key, [])
        why = unrepairable(exp, st)
        if why is not None:
            skipped.append(f"{key!r}: {why}")
            continue
        doc_writes, doc_deletes = _repair_document(key, exp, st, stored, home_shard(key, multi_tenancy))
        if doc_writes or doc_deletes:
            writes += doc_writes
            deletes += doc_deletes
            basis[key] = st
    doomed = {(d.id, d.shard) for d in deletes}
    sources: dict[str, tuple[str, str | None]] = {}
    for obj in sorted(objects, key=lambda o: ((o.id, o.shard) in doomed, o.shard or "", o.id)):
        sources.setdefault(obj.content_hash, (obj.id, obj.shard))
    reuse: dict[str, tuple[str, str | None]] = {}
    from_cache: list[str] = []
    embed: dict[str, str] = {}
    for w in writes:
        h = w.chunk.content_hash
        if h in reuse or h in embed or h in from_cache:
            continue
        if cached(h):
            from_cache.append(h)
        elif h in sources:
            reuse[h] = sources[h]
        else:
            embed[h] = w.chunk.embed_text
    return RepairPlan(writes, deletes, reuse, from_cache, embed, basis, skipped)


def _repair_document(key: str, exp: Expected | None, st: DocState | None, stored: Sequence[StoredObject],
                     shard: str | None) -> tuple[list[Rewrite], list[Removal]]:
    want = dict(zip(exp.chunk_ids, exp.chunks, strict=True)) if exp is not None and not exp.deleted else {}
    awaiting = set(st.pending_delete) if st is not None else set()
    right = {o.id for o in stored if o.shard == shard and o.id in want and o.content_hash == want[o.id].content_hash}
    deletes = [Removal(key, o.id, o.shard) for o in stored
               if o.shard != shard or (o.id not in want and o.id not in awaiting)]
    if not want or exp is None or exp.source is None:
        return [], deletes
    title = title_of(exp.source.event, exp.chunks)
    return [Rewrite(key, cid, c, exp.source, title) for cid, c in want.items() if cid not in right], deletes


def moved(plan: RepairPlan, now: Mapping[str, DocState | None]) -> set[str]:
    """The planned documents whose state changed since planning (``now``: the states written to
    the changelog since then, None for a removed one)."""
    return {key for key, st in now.items() if key in plan.basis and st != plan.basis[key]}
