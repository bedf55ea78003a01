"""The query worker's view of what the indexer has applied, for consistent replies and fences.

Fed from the applied topic (:mod:`schemas.applied`). A hit is *admitted* only when its chunk id
belongs to the chunk set of its document's applied version: while the indexer replaces a
document, Weaviate briefly holds old and new chunks side by side (new ones are written before the
old ones are deleted, and the applied record follows both); the view still names the old set
until the record arrives, so a reply shows the old version or, once the record is read, the new
one, never a mix. Chunks of a document the view does not know yet are not admitted either.
A chunk id is a hash of the chunk's content and place, so a chunk shared by two versions is
rightly admitted under either.

**Memory.** The view holds live documents only, and their chunk ids packed: a chunk id is a UUID
(uuid5, :mod:`workers.ids`), kept as its 16 bytes in one ``bytes`` per document rather than as a
set of 36-character strings (an id that is not a canonical UUID, from another producer, is kept
as text). A deleted document is forgotten: only its key and deleted version stay, in a window of
the last :data:`DELETES_REMEMBERED` deletes (oldest out first), so memory follows the live index,
not the history of deletes. Within the window, a fence on a deleted document is met by the delete
(a fence for version v of a document deleted at version >= v); a fence naming a document deleted
before the window waits like one naming a document never applied (until it is, or the deadline).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.applied import AppliedRecord, ProgressRecord
from schemas.change import document_key, split_key
from schemas.search import DocFence, OffsetFence
from workers.store import StoredHit

DELETES_REMEMBERED = 65_536
"""Deletes the view keeps (key and version) so that fences on just-deleted documents are met; a
delete costs about 150 bytes in it, so the window is bounded at about 10 MB whatever the history."""

_NO_TEXT: frozenset[str] = frozenset()


def _uuid_bytes(chunk_id: str) -> bytes | None:
    """The 16 bytes of a canonical (lower-case, hyphenated) UUID, else None."""
    if len(chunk_id) != 36:
        return None
    try:
        u = uuid.UUID(chunk_id)
    except ValueError:
        return None
    return u.bytes if str(u) == chunk_id else None


@dataclass(frozen=True, slots=True)
class AppliedDoc:
    """The applied version of a live document and its chunk ids, packed (see the module notes)."""

    version: int
    packed: bytes
    """The chunk ids that are canonical UUIDs, 16 bytes each, sorted."""
    text: frozenset[str] = _NO_TEXT
    """The other chunk ids, as they are."""

    @classmethod
    def of(cls, version: int, chunk_ids: Iterable[str]) -> AppliedDoc:
        raw: set[bytes] = set()
        text: set[str] = set()
        for cid in chunk_ids:
            b = _uuid_bytes(cid)
            if b is None:
                text.add(cid)
            else:
                raw.add(b)
        return cls(version, b"".join(sorted(raw)), frozenset(text) if text else _NO_TEXT)

    def __len__(self) -> int:
        return len(self.packed) // 16 + len(self.text)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, str):
            return False
        b = _uuid_bytes(chunk_id)
        if b is None:
            return chunk_id in self.text
        at = self.packed.find(b)
        while at != -1:  # a match must start on a 16-byte boundary
            if at % 16 == 0:
                return True
            at = self.packed.find(b, at + 1)
        return False

    @property
    def chunk_ids(self) -> frozenset[str]:
        """Every chunk id, as text (built on each call: for probes and tests, not the search path)."""
        p = self.packed
        return frozenset(str(uuid.UUID(bytes=p[i:i + 16])) for i in range(0, len(p), 16)) | self.text


Fence = DocFence | Sequence[OffsetFence]


class AppliedView:
    """Document key -> applied version and chunks; changes partition -> handled position."""

    def __init__(self, deletes_remembered: int = DELETES_REMEMBERED) -> None:
        self._docs: dict[str, AppliedDoc] = {}
        self._gone: dict[str, int] = {}
        """Recently deleted documents: key -> deleted version, oldest first."""
        self._gone_max = deletes_remembered
        self._through: dict[int, int] = {}
        self._updated = asyncio.Event()
        self.records = 0
        self.chunks = 0
        """Chunks of the applied versions of all documents."""
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
            return
        key = document_key(record.tenant, record.doc_id)
        prev = self._docs.get(key)
        known = prev.version if prev is not None else self._gone.get(key)
        if known is not None and record.version < known:
            return  # an older record read late changes nothing
        if record.op == "delete":
            self._forget(key, prev, record.version)
            return
        doc = AppliedDoc.of(record.version, record.chunk_ids)
        self._gone.pop(key, None)
        self.chunks += len(doc) - (len(prev) if prev is not None else 0)
        if self.track_recent:
            new = doc.chunk_ids - (prev.chunk_ids if prev is not None else _NO_TEXT)
            if new:
                self.recent.append((record, new))
        self._docs[key] = doc

    def _forget(self, key: str, prev: AppliedDoc | None, version: int) -> None:
        if prev is not None:
            del self._docs[key]
            self.chunks -= len(prev)
        self._gone.pop(key, None)  # re-inserted last: the window drops the oldest deletes first
        self._gone[key] = version
        while len(self._gone) > self._gone_max:
            del self._gone[next(iter(self._gone))]

    def notify(self) -> None:
        """Wake the requests waiting on a fence (after a run of :meth:`apply`)."""
        self._updated.set()
        self._updated = asyncio.Event()

    def doc(self, tenant: str | None, doc_id: str) -> AppliedDoc | None:
        """The applied version of a live document; None for one unknown or deleted."""
        return self._docs.get(document_key(tenant, doc_id))

    def tenants(self) -> set[str | None]:
        """The tenants of the live documents (linear in their number: for probes, not the search path)."""
        return {split_key(key)[0] for key in self._docs}

    def __len__(self) -> int:
        """Documents applied and not deleted."""
        return len(self._docs)

    def positions(self) -> dict[int, int]:
        """A copy of the handled position per changes partition: every record of partition ``p``
        below ``positions()[p]`` is applied in this view (from the progress records; a partition
        without one is absent). Changing the copy changes nothing in the view."""
        return dict(self._through)

    def satisfied(self, fence: Fence) -> bool:
        if isinstance(fence, DocFence):
            key = document_key(fence.tenant, fence.doc_id)
            doc = self._docs.get(key)
            version = doc.version if doc is not None else self._gone.get(key)
            return version is not None and version >= fence.min_version
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
            if doc is not None and h.id in doc:
                out.append((h, doc.version))
        return out
