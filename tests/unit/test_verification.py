import pytest

from schemas.change import ChangeEvent
from workers.chunking import chunk_document
from workers.ids import chunk_ids
from workers.planning import DocState, Sourced
from workers.tenancy import weaviate_tenant
from workers.verification import (
    Expected,
    StoredObject,
    applicable_versions,
    compare,
    expected_documents,
    home_shard,
    latest_versions,
    moved,
    plan_repair,
)


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


# --- repair: the plan (freshet verify --repair) ---------------------------------------------------

SHARED = "A paragraph both documents hold, word for word."
DOCS = [se(1, doc_id="a", op="upsert", version=1, content="# A\n\nold text\n\n" + SHARED),
        se(2, doc_id="a", op="upsert", version=2, content="# A\n\nnew text\n\n" + SHARED + "\n\nlast words"),
        se(3, doc_id="b", op="upsert", version=1, content="# B\n\nintro of b\n\n" + SHARED),
        se(4, doc_id="c", op="upsert", version=1, content="# C\n\ngone soon"),
        se(5, tombstone=True, doc_id="c", op="delete", version=0)]


def faithful() -> tuple[dict[str, Expected], dict[str, DocState], list[StoredObject]]:
    exp = expected_documents(latest_versions(DOCS), chunk)
    states = {k: DocState(version=e.version, deleted=e.deleted, chunk_ids=e.chunk_ids) for k, e in exp.items()}
    objects = [StoredObject(i, k, e.hashes[i]) for k, e in exp.items() for i in e.chunk_ids]
    return exp, states, objects


def test_a_faithful_index_needs_no_repair() -> None:
    exp, states, objects = faithful()
    plan = plan_repair(exp, states, objects)
    assert (plan.writes, plan.deletes, plan.skipped, plan.basis) == ([], [], [], {})


def test_repair_rewrites_what_is_missing_and_deletes_what_should_not_be_there() -> None:
    exp, states, objects = faithful()
    a = exp["a"]
    shared_id = next(i for i, c in zip(a.chunk_ids, a.chunks, strict=True) if c.text == SHARED)
    unique_id = next(i for i, c in zip(a.chunk_ids, a.chunks, strict=True) if c.text == "last words")
    old_a = chunk_ids(None, "a", chunk(DOCS[0]))[0]  # v1's first chunk: an older version
    kept = [o for o in objects if o.id not in (shared_id, unique_id)]
    strays = [StoredObject(old_a, "a", "h-old"), StoredObject("c1", "c", "h-c"), StoredObject("g1", "ghost", "h-g")]
    plan = plan_repair(exp, states, [*kept, *strays])

    assert {(w.key, w.id) for w in plan.writes} == {("a", shared_id), ("a", unique_id)}
    assert all(w.source.event.version == 2 and w.title == "A" for w in plan.writes)
    assert {d.id for d in plan.deletes} == {old_a, "c1", "g1"}
    b_shared = next(o for o in objects if o.key == "b" and o.content_hash == a.hashes[shared_id])
    # the shared paragraph's vector comes from b's object; only the text nothing stores is embedded
    assert plan.reuse == {a.hashes[shared_id]: (b_shared.id, None)}
    assert plan.embed == {a.hashes[unique_id]: "last words"} and plan.cached == []
    assert plan.basis == {"a": states["a"], "c": states["c"], "ghost": None}


def test_the_cache_comes_first_and_one_text_is_embedded_once() -> None:
    exp, states, objects = faithful()
    plan = plan_repair(exp, states, [])
    hashes = {w.chunk.content_hash for w in plan.writes}
    assert len(plan.writes) == len(exp["a"].chunk_ids) + len(exp["b"].chunk_ids) == len(hashes) + 1
    assert set(plan.embed) == hashes and plan.reuse == {}  # nothing stored: every distinct text once
    plan = plan_repair(exp, states, objects, cached=lambda h: True)  # nothing to write: nothing asked
    assert plan.cached == []
    plan = plan_repair(exp, states, objects[1:], cached=lambda h: True)
    assert plan.cached == [objects[0].content_hash] and plan.embed == {} and plan.reuse == {}
    in_b = {o.content_hash for o in objects if o.key == "b"}
    shared = [o for o in objects if o.key == "a" and o.content_hash in in_b]
    assert len(shared) == 1  # a's copy of the shared paragraph: b still stores its vector, the cache too
    rest = [o for o in objects if o != shared[0]]
    assert plan_repair(exp, states, rest, cached=lambda h: True).cached == [shared[0].content_hash]
    assert plan_repair(exp, states, rest).reuse.keys() == {shared[0].content_hash}


def test_an_object_holding_other_content_is_rewritten_from_its_true_text() -> None:
    exp, states, objects = faithful()
    wrong = StoredObject(objects[0].id, objects[0].key, "not-its-hash")
    plan = plan_repair(exp, states, [wrong, *objects[1:]])
    assert [w.id for w in plan.writes] == [wrong.id] and plan.deletes == []
    assert plan.reuse == {} and list(plan.embed) == [objects[0].content_hash]


def test_documents_the_indexer_is_not_caught_up_on_are_left_alone() -> None:
    exp, states, objects = faithful()
    behind = {**states, "a": DocState(version=1, chunk_ids=chunk_ids(None, "a", chunk(DOCS[0])))}
    plan = plan_repair(exp, behind, [o for o in objects if o.key != "a"])
    assert plan.writes == [] and plan.deletes == [] and "'a'" in plan.skipped[0] and len(plan.skipped) == 1
    # a state this run's changes do not show (published after it read them): its objects stay
    ahead = {**states, "new": DocState(version=1, chunk_ids=["n1"])}
    plan = plan_repair(exp, ahead, [*objects, StoredObject("n1", "new", "h")])
    assert plan.deletes == [] and "'new'" in plan.skipped[0]
    # and no state at all for a document the topic shows
    plan = plan_repair(exp, {k: v for k, v in states.items() if k != "b"}, [])
    assert "b" not in {w.key for w in plan.writes} and any("'b'" in s for s in plan.skipped)


def test_chunks_awaiting_their_delete_grace_are_left_to_the_indexer() -> None:
    exp, states, objects = faithful()
    old = chunk_ids(None, "a", chunk(DOCS[0]))
    states["a"] = states["a"].model_copy(update={"pending_delete": old})
    plan = plan_repair(exp, states, [*objects, *(StoredObject(i, "a", "h-old") for i in old)])
    assert plan.deletes == [] and plan.writes == []


def test_a_state_that_moves_after_planning_drops_that_document_from_the_plan() -> None:
    exp, states, objects = faithful()
    plan = plan_repair(exp, states, [o for o in objects if o.key != "b"] + [StoredObject("g1", "ghost", "h")])
    assert moved(plan, {"b": states["b"], "zzz": None}) == set()  # unchanged, or not planned
    newer = DocState(version=2, chunk_ids=["x"])
    gone = moved(plan, {"b": newer, "ghost": newer})
    assert gone == {"b", "ghost"}
    safe = plan.without(gone)
    assert safe.writes == [] and safe.deletes == [] and len(safe.skipped) == 2


def test_with_multi_tenancy_chunks_go_to_their_tenant_shard_and_misplaced_ones_leave_the_other() -> None:
    t = [Sourced(ChangeEvent(doc_id="d", tenant="acme corp", op="upsert", version=1, content="# T\n\nhello"), 0, 1)]
    exp = expected_documents(latest_versions(t), chunk)
    key = t[0].event.key
    st = {key: DocState(version=1, chunk_ids=exp[key].chunk_ids)}
    cid = exp[key].chunk_ids[0]
    home = weaviate_tenant("acme corp")
    assert home_shard(key, True) == home != "acme corp" and home_shard(key, False) is None
    ok = [StoredObject(i, key, exp[key].hashes[i], home) for i in exp[key].chunk_ids]
    assert plan_repair(exp, st, ok, multi_tenancy=True).writes == []
    misplaced = [StoredObject(cid, key, exp[key].hashes[cid], "other"), *ok[1:]]
    plan = plan_repair(exp, st, misplaced, multi_tenancy=True)
    assert [(w.id, w.source.event.tenant) for w in plan.writes] == [(cid, "acme corp")]
    assert [(d.id, d.shard) for d in plan.deletes] == [(cid, "other")]
    assert plan.reuse == {exp[key].hashes[cid]: (cid, "other")}  # its own vector, read before the delete


def test_verify_repair_reports_the_counts_then_verifies_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import freshet.cli
    import freshet.verify
    from freshet.cli import verify
    from freshet.settings import Settings
    from freshet.verify import RepairReport

    verified: list[bool] = []
    after: list[str] = []
    monkeypatch.setattr(freshet.verify, "run_repair", lambda s: RepairReport(
        ["'a': Weaviate has 0 unexpected and lacks 2 chunks"], 2, 3, 1, 0, 1, ["'z': no indexer state"], 4.2))
    monkeypatch.setattr(freshet.verify, "run_verify", lambda s, vectors: verified.append(vectors) or after)
    monkeypatch.setattr(freshet.cli, "_active", lambda s: s)  # no generations topic to read: a unit test
    out = CliRunner().invoke(verify, ["--repair"], obj=Settings())
    assert out.exit_code == 0 and verified == [False], out.output
    assert "lacks 2 chunks" in out.output and "skipped 'z'" in out.output
    assert ("repair: 2 object(s) rewritten, 3 deleted; vectors: 1 reused from Weaviate, 0 from the cache, "
            "1 chunk(s) embedded; 1 document(s) skipped; 4.2 s") in out.output
    after.append("'z': no indexer state")  # what the repair had to skip is still there: exit 1
    assert CliRunner().invoke(verify, ["--repair"], obj=Settings()).exit_code == 1
