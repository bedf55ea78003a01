"""A seeded, mixed stream of change events and the index it must leave behind (pure, no I/O).

:func:`generate` draws ``n`` events over a pool of documents: new documents, edits, metadata-only
changes, deletes (``op: delete``), tombstones (null value), re-creates after a delete, stale
versions (at or below the highest seen) and exact duplicates of an earlier event. Alongside the
stream it keeps its own model of each document, folded by the rules of the contract (docs/architecture.md,
"Stale events"), independently of the indexer's code:

* an upsert or delete applies only if its version is above the highest version seen so far;
* a tombstone always applies and keeps that highest version, so a re-create needs a higher one.

:attr:`Workload.final` is the result: per document key, the latest applied content, title and
metadata, or deleted. The same seed always gives the same stream and the same expected state.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from schemas.change import ChangeEvent, document_key

#: Share of each kind of event, once enough documents exist for it.
KINDS: dict[str, float] = {
    "new": 0.22, "edit": 0.30, "metadata": 0.10, "delete": 0.07, "tombstone": 0.06,
    "recreate": 0.07, "stale": 0.10, "duplicate": 0.08,
}
GOOD_PREFIX = "good-"
"""Every event of a workload has an ``event_id`` with this prefix (tombstones have no value)."""

_WORDS = (
    "kafka", "stream", "index", "vector", "chunk", "weaviate", "search", "replay", "offset", "partition",
    "broker", "shard", "tenant", "version", "delete", "edit", "title", "heading", "paragraph", "embedding",
    "model", "latency", "freshness", "fence", "reply", "request", "cache", "batch", "commit", "rebalance",
    "consumer", "producer", "topic", "schema", "contract", "metric", "probe", "golden", "recall", "window",
    "backlog", "retry", "backoff", "outage", "restart", "crash", "durable", "idempotent", "ordered",
    "stale", "duplicate",
)
_LANGS = ("en", "de", "fr", "nl")
_TENANTS = (None, None, None, "acme", "globex")


@dataclass(frozen=True)
class Record:
    """One record to publish on the changes topic: ``event`` None is a tombstone for ``key``."""

    key: str
    event: ChangeEvent | None
    kind: str

    @property
    def value(self) -> bytes | None:
        return None if self.event is None else self.event.model_dump_json(exclude_none=True).encode()


@dataclass(frozen=True)
class Final:
    """A document's expected state after the whole stream."""

    doc_id: str
    tenant: str | None
    version: int
    """Highest applied version (a tombstone keeps it)."""
    deleted: bool
    event: ChangeEvent | None
    """The upsert whose content, title and metadata the index must hold (None when deleted)."""


@dataclass
class _Doc:
    doc_id: str
    tenant: str | None
    highest: int = -1
    live: ChangeEvent | None = None
    deleted: bool = False
    last: Record | None = None


@dataclass
class Workload:
    records: list[Record]
    final: dict[str, Final]
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def live(self) -> dict[str, Final]:
        return {k: f for k, f in self.final.items() if not f.deleted}


def _paragraph(rnd: random.Random) -> str:
    words = [rnd.choice(_WORDS) for _ in range(rnd.randint(12, 40))]
    return (" ".join(words) + ".").capitalize()


def _content(rnd: random.Random, title: str, paragraphs: list[str]) -> str:
    return f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n"


class _Generator:
    def __init__(self, seed: int, docs: int, prefix: str) -> None:
        self.rnd = random.Random(seed)
        self.docs: dict[str, _Doc] = {}
        self.pool = [(f"{prefix}/{i:05d}.md", _TENANTS[i % len(_TENANTS)]) for i in range(docs)]
        self.unused = list(self.pool)
        self.rnd.shuffle(self.unused)
        self.paragraphs: dict[str, list[str]] = {}
        self.n = 0
        self.prefix = prefix

    def _event(self, d: _Doc, version: int, *, op: str = "upsert", paragraphs: list[str] | None = None,
               title: str | None = None, metadata: dict[str, object] | None = None) -> ChangeEvent:
        self.n += 1
        eid = f"{GOOD_PREFIX}{self.prefix}-{self.n}"
        if op == "delete":
            return ChangeEvent(doc_id=d.doc_id, tenant=d.tenant, op="delete", version=version, event_id=eid)
        title = title or f"Note {d.doc_id.rsplit('/', 1)[-1]} {self.rnd.choice(_WORDS)}"
        meta = metadata if metadata is not None else self._metadata()
        return ChangeEvent(doc_id=d.doc_id, tenant=d.tenant, op="upsert", version=version, title=title,
                           metadata=meta, event_id=eid, content=_content(self.rnd, title, paragraphs or []))

    def _metadata(self) -> dict[str, object]:
        return {"lang": self.rnd.choice(_LANGS), "year": self.rnd.randint(2015, 2026),
                "tags": sorted(self.rnd.sample(_WORDS, self.rnd.randint(0, 3)))}

    def _bump(self, d: _Doc) -> int:
        return d.highest + self.rnd.choice((1, 1, 1, 2, 5))

    def step(self) -> Record | None:
        kind = self.rnd.choices(list(KINDS), weights=list(KINDS.values()))[0]
        live = [d for d in self.docs.values() if d.live is not None and not d.deleted]
        gone = [d for d in self.docs.values() if d.deleted]
        seen = [d for d in self.docs.values() if d.last is not None]
        if not live:
            kind = "new" if self.unused else "recreate"
        if kind == "new":
            if not self.unused:
                return None
            doc_id, tenant = self.unused.pop()
            d = self.docs[doc_id] = _Doc(doc_id, tenant)
            paras = [_paragraph(self.rnd) for _ in range(self.rnd.randint(1, 4))]
            return self._apply(d, "new", self._event(d, self.rnd.randint(1, 3), paragraphs=paras), paras)
        if kind == "edit":
            d = self.rnd.choice(live)
            paras = self._edited(self.paragraphs[d.doc_id])
            return self._apply(d, kind, self._event(d, self._bump(d), paragraphs=paras, title=_title(d.live)), paras)
        if kind == "metadata":
            d = self.rnd.choice(live)
            ev = d.live
            assert ev is not None
            title = ev.title if self.rnd.random() < 0.5 else f"{ev.title} {self.rnd.choice(_WORDS)}"
            new = ev.model_copy(update={"version": self._bump(d), "title": title, "metadata": self._metadata(),
                                        "event_id": self._next_id()})  # same content: nothing to embed
            return self._apply(d, kind, new, self.paragraphs[d.doc_id])
        if kind == "delete":
            d = self.rnd.choice(live)
            return self._apply(d, kind, self._event(d, self._bump(d), op="delete"), [])
        if kind == "tombstone":
            d = self.rnd.choice(live)
            return self._apply(d, kind, None, [])
        if kind == "recreate":
            if not gone:
                return None
            d = self.rnd.choice(gone)
            paras = [_paragraph(self.rnd) for _ in range(self.rnd.randint(1, 4))]
            return self._apply(d, kind, self._event(d, self._bump(d), paragraphs=paras), paras)
        if kind == "stale":  # on a live document, or a deleted one (which it must not bring back)
            d = self.rnd.choice(gone if gone and self.rnd.random() < 0.3 else live)
            if d.highest < 1:
                return None
            paras = [_paragraph(self.rnd)]
            return self._apply(d, kind, self._event(d, self.rnd.randint(0, d.highest), paragraphs=paras), paras)
        d = self.rnd.choice(seen)  # duplicate: the very same record again (same version, same event id)
        assert d.last is not None
        return self._apply(d, kind, d.last.event, None)

    def _next_id(self) -> str:
        self.n += 1
        return f"{GOOD_PREFIX}{self.prefix}-{self.n}"

    def _edited(self, paras: list[str]) -> list[str]:
        out = list(paras)
        how = self.rnd.choice(("replace", "append", "insert", "drop", "revert"))
        if how == "drop" and len(out) > 1:
            out.pop(self.rnd.randrange(len(out)))
        elif how == "append" and len(out) < 5:
            out.append(_paragraph(self.rnd))
        elif how == "insert" and len(out) < 5:
            out.insert(0, _paragraph(self.rnd))
        elif how == "revert" and len(out) > 1:
            out.reverse()
        else:
            out[self.rnd.randrange(len(out))] = _paragraph(self.rnd)
        return out

    def _apply(self, d: _Doc, kind: str, event: ChangeEvent | None, paras: list[str] | None) -> Record:
        """Fold the record into the model exactly as the contract says, and return it."""
        rec = Record(document_key(d.tenant, d.doc_id), event, kind)
        if event is None:
            d.deleted, d.live = True, None
        elif event.version > d.highest:
            d.highest = event.version
            d.deleted = event.op == "delete"
            d.live = None if d.deleted else event
            if paras is not None and not d.deleted:
                self.paragraphs[d.doc_id] = paras
        if kind != "duplicate":
            d.last = rec
        return rec


def _title(ev: ChangeEvent | None) -> str | None:
    return None if ev is None else ev.title


def generate(n: int, *, seed: int, docs: int | None = None, prefix: str = "chaos") -> Workload:
    """``n`` change events over ``docs`` documents (default ``n // 5``) and the state they leave."""
    gen = _Generator(seed, docs or max(10, n // 5), prefix)
    records: list[Record] = []
    kinds: Counter[str] = Counter()
    while len(records) < n:
        rec = gen.step()
        if rec is None:
            continue
        records.append(rec)
        kinds[rec.kind] += 1
    final = {document_key(d.tenant, d.doc_id): Final(d.doc_id, d.tenant, d.highest, d.deleted, d.live)
             for d in gen.docs.values()}
    return Workload(records, final, kinds)
