"""The applied view forgets deleted documents, still meets fences on them, and packs chunk ids."""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from datetime import UTC, datetime

from schemas.applied import AppliedRecord, ProgressRecord
from schemas.search import DocFence, OffsetFence
from workers.applied_view import AppliedDoc, AppliedView
from workers.store import StoredHit


def ids(doc: str, n: int, version: int = 1) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}/{version}/{i}")) for i in range(n)]


def applied(doc: str, version: int, chunk_ids: list[str], op: str = "upsert") -> AppliedRecord:
    return AppliedRecord(doc_id=doc, version=version, op=op, chunk_ids=chunk_ids,  # type: ignore[arg-type]
                         source_partition=0, source_offset=version, applied_at=datetime.now(UTC))


def hit(chunk_id: str, doc: str) -> StoredHit:
    return StoredHit(id=chunk_id, score=1.0, properties={"doc_id": doc})


def test_a_deleted_document_is_forgotten_and_its_fences_are_met() -> None:
    view = AppliedView()
    view.apply(applied("a", 1, ids("a", 3)))
    view.apply(applied("b", 1, ids("b", 2)))
    assert (len(view), view.chunks) == (2, 5)
    view.apply(applied("a", 4, [], op="delete"))
    assert view.doc(None, "a") is None and "a" not in view._docs
    assert (len(view), view.chunks) == (1, 2)
    assert view.admit([hit(c, "a") for c in ids("a", 3)]) == []
    assert view.satisfied(DocFence(doc_id="a", min_version=1))
    assert view.satisfied(DocFence(doc_id="a", min_version=4))
    assert not view.satisfied(DocFence(doc_id="a", min_version=5))
    assert not view.satisfied(DocFence(doc_id="never", min_version=0))


def test_a_delete_never_preceded_by_an_upsert_meets_its_fence_too() -> None:
    view = AppliedView()
    view.apply(applied("x", 7, [], op="delete"))
    assert len(view) == 0 and view.satisfied(DocFence(doc_id="x", min_version=7))


def test_a_recreated_document_comes_back_and_older_records_change_nothing() -> None:
    view = AppliedView()
    view.apply(applied("a", 1, ids("a", 2)))
    view.apply(applied("a", 2, [], op="delete"))
    view.apply(applied("a", 1, ids("a", 2)))  # read late: older than the delete
    assert view.doc(None, "a") is None
    view.apply(applied("a", 3, ids("a", 1, 3)))
    doc = view.doc(None, "a")
    assert doc is not None and doc.version == 3 and doc.chunk_ids == frozenset(ids("a", 1, 3))
    assert "a" not in view._gone and view.chunks == 1


def test_memory_does_not_grow_with_deletes() -> None:
    view = AppliedView(deletes_remembered=100)
    for i in range(1000):
        view.apply(applied(f"d{i}", 1, ids(f"d{i}", 2)))
        view.apply(applied(f"d{i}", 2, [], op="delete"))
    assert (len(view._docs), len(view._gone), view.chunks) == (0, 100, 0)
    assert view.satisfied(DocFence(doc_id="d999", min_version=2))  # the newest deletes are remembered
    assert not view.satisfied(DocFence(doc_id="d0", min_version=2))  # the oldest fell out of the window


def test_a_waiting_fence_is_met_by_the_delete() -> None:
    async def scenario() -> bool:
        view = AppliedView()
        view.apply(applied("a", 1, ids("a", 1)))
        waiting = asyncio.ensure_future(view.wait(DocFence(doc_id="a", min_version=2), 5))
        await asyncio.sleep(0.01)
        view.apply(applied("a", 2, [], op="delete"))
        view.notify()
        return await waiting

    assert asyncio.run(scenario())


def test_positions_is_a_copy_of_the_progress() -> None:
    view = AppliedView()
    assert view.positions() == {}
    view.apply(ProgressRecord(partition=0, through=5))
    view.apply(ProgressRecord(partition=2, through=9))
    view.apply(ProgressRecord(partition=0, through=3))  # never backwards
    got = view.positions()
    assert got == {0: 5, 2: 9}
    got[0] = 100
    assert view.positions() == {0: 5, 2: 9}
    assert view.satisfied([OffsetFence(partition=0, offset=4)])


def test_packed_chunk_ids_answer_membership_exactly() -> None:
    cids = ids("p", 40)
    doc = AppliedDoc.of(1, [*cids, "not-a-uuid", cids[0].upper()])
    assert len(doc) == 42 and len(doc.packed) == 40 * 16
    assert all(c in doc for c in cids) and "not-a-uuid" in doc and cids[0].upper() in doc
    assert doc.chunk_ids == frozenset([*cids, "not-a-uuid", cids[0].upper()])
    others = ids("q", 200)
    assert not any(c in doc for c in others)
    # a 16-byte window straddling two packed ids is not a member
    straddle = str(uuid.UUID(bytes=doc.packed[8:24]))
    assert straddle not in doc


def test_a_million_chunk_ids_fit_in_well_under_100_mb() -> None:
    """5 chunks per document: the packed view costs a fraction of a set of strings."""
    docs = 20_000
    records = [applied(f"docs/{i}.md", 1, ids(str(i), 5)) for i in range(docs)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    view = AppliedView()
    for r in records:
        view.apply(r)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_million = used / (docs * 5) * 1_000_000
    assert view.chunks == docs * 5
    assert per_million < 60e6, f"{per_million / 1e6:.0f} MB per million chunk ids"
