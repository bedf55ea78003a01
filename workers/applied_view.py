"""The query worker's view of what the indexer has applied, for consistent replies and fences.

Fed from the applied topic (:mod:`schemas.applied`). A hit is *admitted* only when its chunk id
belongs to the chunk set of its document's applied version: while the indexer replaces a
document, Weaviate briefly holds old and new chunks side by side (new ones are written before the
old ones are deleted, and the applied record follows both); the view still names the old set
until the record arrives, so a reply shows the old version or, once the record is read, the new
one, never a mix. Chunks of a document the view does not know yet are not admitted either.
A chunk id is a hash of the chunk's content and place, so a chunk shared by two versions is
rightly admitted under either.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.applied import AppliedRecord, ProgressRecord
from schemas.change import document_key
from schemas.search import DocFence, OffsetFence
from workers.store import StoredHit


@dataclass(frozen=True, slots=True)
class AppliedDoc:
    version: int
    chunk_ids: frozenset[str]
    deleted: bool


Fence = DocFence | Sequence[OffsetFence]


class AppliedView:
    """Document key -> applied version and chunks; changes partition -> handled position."""

    def __init__(self) -> None:
        self._docs: dict[str, AppliedDoc] = {}
        self._through: dict[int, int] = {}
        self._updated = asyncio.Event()
        self.records = 0
        self.chunks = 0
        """Chunks of the applied versions of all documents."""
        self._live = 0
        self.recent: deque[tuple[AppliedRecord, frozenset[str]]] = deque(maxlen=100)
        """Recently applied upserts with their new chunk ids (not in the previous version): the
        searchability probe's sample; kept only once :attr:`track_recent` is set (after the replay
        of the topic's history, whose records are not recent)."""
        self.track_recent = False

    def apply(self, record: AppliedRecord | ProgressRecord) -> None:
        """Take one record of the applied topic (in topic order)."""
        self.records += 1
        if isinstance(record, ProgressRecord):
            self._through[record.partition] = max(record.through, self._through.get(record.partition, 0))
        else:
            key = document_key(record.tenant, record.doc_id)
            prev = self._docs.get(key)
            if prev is None or record.version >= prev.version:
                doc = AppliedDoc(record.version, frozenset(record.chunk_ids), record.op == "delete")
                self.chunks += len(doc.chunk_ids) - (len(prev.chunk_ids) if prev is not None else 0)
                self._live += (not doc.deleted) - (prev is not None and not prev.deleted)
                new = doc.chunk_ids - (prev.chunk_ids if prev is not None else frozenset())
                if new and not doc.deleted and self.track_recent:
                    self.recent.append((record, new))
                self._docs[key] = doc

    def notify(self) -> None:
        """Wake the requests waiting on a fence (after a run of :meth:`apply`)."""
        self._updated.set()
        self._updated = asyncio.Event()

    def doc(self, tenant: str | None, doc_id: str) -> AppliedDoc | None:
        return self._docs.get(document_key(tenant, doc_id))

    def __len__(self) -> int:
        """Documents applied and not deleted."""
        return self._live

    def satisfied(self, fence: Fence) -> bool:
        if isinstance(fence, DocFence):
            doc = self.doc(fence.tenant, fence.doc_id)
            return doc is not None and doc.version >= fence.min_version
        return all(self._through.get(f.partition, 0) > f.offset for f in fence)

    async def wait(self, fence: Fence, timeout: float | None) -> bool:
        """Until ``fence`` is satisfied (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.satisfied(fence):
            updated = self._updated
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(updated.wait(), left)
            except TimeoutError:
                return self.satisfied(fence)
        return True

    def admit(self, hits: Sequence[StoredHit]) -> list[tuple[StoredHit, int]]:
        """The hits whose chunk belongs to their document's applied chunk set, with that version."""
        out: list[tuple[StoredHit, int]] = []
        for h in hits:
            tenant = str(h.properties.get("tenant") or "") or None
            doc = self.doc(tenant, str(h.properties.get("doc_id", "")))
            if doc is not None and not doc.deleted and h.id in doc.chunk_ids:
                out.append((h, doc.version))
        return out
