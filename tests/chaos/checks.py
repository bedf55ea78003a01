"""The end-of-scenario checks: the index against a clean load of the workload's latest versions.

Three independent views must agree with the workload's own model (:mod:`tests.chaos.workload`):

* the applied topic: each document's latest applied record has the expected op and version;
* Weaviate: exactly the chunk ids a fresh chunking of each live document gives (``lost``: expected
  and absent; ``stale``: present but of no live version, or with an old title or metadata;
  ``duplicated``: the same chunk content stored more often than the document holds it);
* the dead-letter topic: no record of the workload (matched by its source partition and offset).

``freshet verify --vectors`` (:func:`freshet.verify.run_verify`) is run on top by the scenarios.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from freshet.client import read_to_end
from freshet.settings import Settings
from schemas.change import document_key
from tests.chaos.observe import AppliedFollower
from tests.chaos.workload import Final
from workers.chunking import Context, chunk_document
from workers.embedding import SentenceTransformerEmbedder
from workers.ids import chunk_ids
from workers.weaviate_store import sync_client

#: Once every record is handled, how long the applied view may stay wrong before it counts as final.
STABLE_SECONDS = 45.0


@dataclass
class IndexFigures:
    lost: int = 0
    stale: int = 0
    duplicated: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.stale == self.duplicated == 0


def applied_mismatches(follower: AppliedFollower, final: dict[str, Final]) -> list[str]:
    """Documents whose latest applied record is not the expected op and version."""
    out = []
    with follower.lock:
        docs = dict(follower.docs)
    for key, f in sorted(final.items()):
        rec = docs.get(key)
        op = "delete" if f.deleted else "upsert"
        if rec is None:
            out.append(f"{key!r}: never applied (expected {op} v{f.version})")
        elif rec.op != op or (op == "upsert" and rec.version != f.version):  # a tombstone's version: see README
            out.append(f"{key!r}: applied {rec.op} v{rec.version}, expected {op} v{f.version}")
    return out


def wait_applied(follower: AppliedFollower, final: dict[str, Final], needed: dict[int, int],
                 timeout: float) -> list[str]:
    """Wait until every document is applied as expected and every record handled; what is still not."""
    deadline = time.monotonic() + timeout
    last: tuple[list[str], float] = ([], time.monotonic())
    while True:
        missing = applied_mismatches(follower, final)
        handled = follower.handled(needed)
        if not missing and handled:
            return []
        if missing != last[0]:
            last = (missing, time.monotonic())
        # every record handled and nothing changing any more: what is wrong now stays wrong
        if time.monotonic() > deadline or (handled and time.monotonic() - last[1] > STABLE_SECONDS):
            return missing or [f"progress {follower.through} short of {needed}"]
        time.sleep(1.0)


def _expected_chunks(final: dict[str, Final], embedder: SentenceTransformerEmbedder,
                     min_chars: int, context: Context) -> dict[str, dict[str, str]]:
    """Per live document key, chunk id -> content hash of a fresh chunking."""
    out: dict[str, dict[str, str]] = {}
    for key, f in final.items():
        if f.deleted or f.event is None:
            continue
        chunks = chunk_document(f.event.content or "", content_type=f.event.content_type,
                                max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens,
                                min_chars=min_chars, title=f.event.title, context=context)
        out[key] = dict(zip(chunk_ids(f.tenant, f.doc_id, chunks), (c.content_hash for c in chunks), strict=True))
    return out


def _stored(settings: Settings) -> list[dict[str, Any]]:
    client = sync_client(settings.weaviate_host, settings.weaviate_http_port, settings.weaviate_grpc_port)
    try:
        coll = client.collections.use(settings.collection)
        props = ["doc_id", "tenant", "content_hash", "title", "metadata_json"]
        return [{"id": str(o.uuid), **o.properties} for o in coll.iterator(return_properties=props)]
    finally:
        client.close()


def index_figures(settings: Settings, final: dict[str, Final], embedder: SentenceTransformerEmbedder,
                  only: set[str] | None = None) -> IndexFigures:
    """Lost, stale and duplicated chunks of the documents in ``final`` (all stored objects of
    documents not in ``final`` count as stale unless ``only`` limits the check to some keys)."""
    expected = _expected_chunks(final, embedder, settings.chunk_min_chars, settings.chunk_context)
    fig = IndexFigures()
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for obj in _stored(settings):
        key = document_key(str(obj.get("tenant") or "") or None, str(obj["doc_id"]))
        if only is None or key in only:
            by_doc.setdefault(key, []).append(obj)
    for key in sorted(set(expected) | set(by_doc)):
        want, have = expected.get(key, {}), by_doc.get(key, [])
        ids = Counter(o["id"] for o in have)
        lost = [i for i in want if i not in ids]
        extra = [o for o in have if o["id"] not in want]
        ev = final[key].event if key in final else None
        outdated = [o for o in have if o["id"] in want and ev is not None and (
            (o.get("title") or "") != (ev.title or "")
            or o.get("metadata_json") != json.dumps(ev.metadata, sort_keys=True))]
        held, due = Counter(o["content_hash"] for o in have), Counter(want.values())
        # the same content more often than the live version holds it (content of no live version is stale)
        dup = sum(max(0, n - due[h]) for h, n in held.items() if h in due) + sum(n - 1 for n in ids.values() if n > 1)
        fig.lost += len(lost)
        fig.stale += len(extra) + len(outdated)
        fig.duplicated += dup
        if (lost or extra or outdated or dup) and len(fig.examples) < 20:
            fig.examples.append(f"{key!r}: {len(lost)} lost, {len(extra)} of no live version, {len(outdated)} "
                                f"with an old title/metadata, {dup} duplicated")
    return fig


def settle_index(settings: Settings, final: dict[str, Final], embedder: SentenceTransformerEmbedder,
                 timeout: float, only: set[str] | None = None) -> IndexFigures:
    """Index figures once clean, or the last ones after ``timeout`` (old chunks go after a grace period)."""
    deadline = time.monotonic() + timeout
    while True:
        fig = index_figures(settings, final, embedder, only)
        if fig.clean or time.monotonic() > deadline:
            return fig
        time.sleep(3.0)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    error: str
    worker: str
    topic: str
    partition: int
    offset: int


def dead_letters(settings: Settings) -> list[DeadLetter]:
    out = []
    for r in read_to_end(settings.bootstrap_servers, settings.topic_dead_letter):
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in (r.headers or [])}
        out.append(DeadLetter(h.get("freshet.reason", ""), h.get("freshet.error", "")[:300],
                              h.get("freshet.worker", ""), h.get("freshet.source.topic", ""),
                              int(h.get("freshet.source.partition", "-1") or -1),
                              int(h.get("freshet.source.offset", "-1") or -1)))
    return out


def good_dead_lettered(letters: list[DeadLetter], topic: str, good: set[tuple[int, int]]) -> list[DeadLetter]:
    return [d for d in letters if d.topic == topic and (d.partition, d.offset) in good]
