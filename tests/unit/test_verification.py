from schemas.change import ChangeEvent
from workers.chunking import chunk_document
from workers.ids import chunk_ids
from workers.planning import DocState, Sourced
from workers.verification import StoredObject, applicable_versions, compare, expected_documents, latest_versions


def se(offset: int, tombstone: bool = False, **fields: object) -> Sourced:
    return Sourced(ChangeEvent.model_validate(fields), 0, offset, tombstone=tombstone)


def chunk(s: Sourced):  # type: ignore[no-untyped-def]
    return chunk_document(s.event.content or "", count_tokens=lambda t: len(t.split()), min_chars=0)


EVENTS = [se(1, doc_id="a", op="upsert", version=1, content="one\n\ntwo"),
          se(2, doc_id="a", op="upsert", version=3, content="one\n\nthree"),
          se(3, doc_id="a", op="upsert", version=2, content="stale"),
          se(4, doc_id="b", op="upsert", version=1, content="bee"),
          se(5, tombstone=True, doc_id="b", op="delete", version=0)]


def test_latest_versions_fold_like_the_indexer() -> None:
    latest = latest_versions(EVENTS)
    assert latest["a"].event.version == 3 and latest["b"].tombstone


def test_compare_reports_nothing_for_a_faithful_index_and_each_kind_of_drift() -> None:
    exp = expected_documents(latest_versions(EVENTS), chunk)
    ids = chunk_ids(None, "a", chunk(EVENTS[1]))
    states = {"a": DocState(version=3, chunk_ids=ids), "b": DocState(version=1, deleted=True)}
    objects = [StoredObject(i, "a", exp["a"].hashes[i]) for i in ids]
    assert compare(exp, states, objects) == []
    assert len(compare(exp, states, objects[:1])) == 1
    assert len(compare(exp, states, [*objects, StoredObject("x", "zzz", "h")])) == 1
    assert len(compare(exp, {"b": states["b"]}, objects)) == 1


def test_an_event_refused_for_its_chunk_count_leaves_the_version_before_it() -> None:
    # a (v3) is refused once chunked: the indexer keeps v1, then applies v2 (above v1), as verify must expect
    latest = applicable_versions(EVENTS, lambda s: s.event.version == 3)
    assert latest["a"].event.content == "stale" and latest["b"].tombstone
    assert applicable_versions(EVENTS, lambda s: False) == latest_versions(EVENTS)


def test_chunks_awaiting_their_delete_grace_are_not_drift() -> None:
    """A rewritten or deleted document's old chunks stay in Weaviate for FRESHET_DELETE_GRACE_SECONDS
    after its new version is applied, listed in its state's pending deletes: verify run in that
    window (as ``freshet bench edits`` runs it right after the replay) must not report them; a
    stale chunk the state does not list is still drift."""
    exp = expected_documents(latest_versions(EVENTS), chunk)
    ids = chunk_ids(None, "a", chunk(EVENTS[1]))
    old_a = chunk_ids(None, "a", chunk(EVENTS[0]))
    gone_a = [i for i in old_a if i not in ids]
    old_b = chunk_ids(None, "b", chunk(EVENTS[3]))
    states = {"a": DocState(version=3, chunk_ids=ids, pending_delete=gone_a),
              "b": DocState(version=1, deleted=True, pending_delete=old_b)}
    objects = [StoredObject(i, "a", exp["a"].hashes[i]) for i in ids]
    lingering = [StoredObject(i, "a", "old") for i in gone_a] + [StoredObject(i, "b", "old") for i in old_b]
    assert gone_a and old_b
    assert compare(exp, states, [*objects, *lingering]) == []
    unlisted = {"a": DocState(version=3, chunk_ids=ids), "b": states["b"]}
    assert compare(exp, unlisted, [*objects, *lingering]) == ["'a': Weaviate has 1 unexpected and lacks 0 chunks"]
