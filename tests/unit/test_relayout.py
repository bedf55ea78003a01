"""The relayout's pure logic: where keys go, what is copied, and that the indexer finds the copies stale."""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.applied import AppliedRecord, ProgressRecord, progress_key
from schemas.change import ChangeEvent, document_key, parse_change
from workers.delivery import position_key
from workers.planning import DocState, Sourced, winning_event
from workers.relayout import (
    Existing,
    Layout,
    Originals,
    deciding_change,
    lag_problems,
    latest,
    moved_applied,
    moved_state,
    partition_of,
    plan,
    positions_of,
    states_of,
    version_of_applied,
)


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


def state_rec(offset: int, key: str, value: object, partition: int = 0) -> Rec:
    return Rec("old-changelog", partition, offset, json.dumps(key).encode(),
               None if value is None else json.dumps(value).encode())


def upsert(doc_id: str, version: int, tenant: str | None = None) -> ChangeEvent:
    return ChangeEvent(doc_id=doc_id, tenant=tenant, op="upsert", version=version, content=f"{doc_id} v{version}")


def test_partitions_are_kafkas_default_partitioner() -> None:
    # Kafka's own murmur2 test vectors (UtilsTest): "21" -> -973932308, "foobar" -> -790332482
    assert partition_of("21", 1 << 31) == -973932308 & 0x7FFFFFFF
    assert partition_of("foobar", 1000) == (-790332482 & 0x7FFFFFFF) % 1000
    assert {partition_of(document_key("acme", f"d{i}"), 4) for i in range(50)} == {0, 1, 2, 3}


def test_latest_keeps_each_keys_last_record_and_drops_tombstoned_and_keyless_ones() -> None:
    records = [Rec("t", 0, 0, b"a", b"1"), Rec("t", 1, 0, b"b", b"1"), Rec("t", 0, 1, b"a", b"2"),
               Rec("t", 1, 1, b"b", None), Rec("t", 0, 2, None, b"x")]
    assert {k: r.value for k, r in latest(records).items()} == {b"a": b"2"}


def test_states_and_positions_are_told_apart() -> None:
    changelog = latest([state_rec(0, "a", DocState(version=2).model_dump(mode="json")),
                        state_rec(1, position_key(0), 7)])
    assert list(states_of(changelog)) == ["a"] and states_of(changelog)["a"][1].version == 2
    assert positions_of(changelog) == {0: 7}


def test_lag_problems_name_every_partition_not_handled_to_its_end() -> None:
    assert lag_problems({0: 10, 1: 4}, {0: (0, 10), 1: (4, 4), 2: (0, 0)}) == []
    problems = lag_problems({0: 8}, {0: (0, 10), 1: (0, 3)})
    assert len(problems) == 2 and "2 record(s)" in problems[0] and "3 record(s)" in problems[1]


def test_a_moved_state_keeps_everything_but_its_place() -> None:
    old = DocState(version=3, chunk_ids=["x"], partition=1, offset=40, pending_delete=["y"], pending_sweep=True)
    raw = json.dumps({**old.model_dump(mode="json"), "future_field": 1}).encode()
    moved = json.loads(moved_state(raw, 3))
    assert moved == {**old.model_dump(mode="json"), "future_field": 1, "partition": 3, "offset": -1}


def test_a_moved_applied_record_names_its_new_partition_and_progress_records_are_not_moved() -> None:
    rec = AppliedRecord(doc_id="a", version=2, op="upsert", chunk_ids=["x"], source_partition=1, source_offset=9,
                        applied_at="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    moved = AppliedRecord.model_validate_json(moved_applied(rec.model_dump_json().encode(), 2))
    assert (moved.source_partition, moved.source_offset, moved.chunk_ids) == (2, -1, ["x"])
    assert version_of_applied(ProgressRecord(partition=0, through=5).model_dump_json().encode()) == -1


def test_the_deciding_change_is_the_original_upsert_or_a_versioned_delete() -> None:
    original = upsert("a", 3, tenant="t").model_dump_json().encode()
    key = document_key("t", "a")
    assert deciding_change(key, DocState(version=3), original) == original
    assert deciding_change(key, DocState(version=3), None) is None
    assert deciding_change("other", DocState(version=3), original) is None
    deleted = deciding_change(key, DocState(version=5, deleted=True), None)
    event = parse_change(deleted, key.encode(), max_bytes=10_000)
    assert (event.op, event.version, event.key) == ("delete", 5, key)


def test_originals_are_found_by_place_or_for_a_relaid_state_by_version() -> None:
    states = {"a": (state_rec(0, "a", {}), DocState(version=2, partition=1, offset=5)),
              "b": (state_rec(1, "b", {}), DocState(version=4, partition=0, offset=-1)),
              "c": (state_rec(2, "c", {}), DocState(version=1, deleted=True, partition=0, offset=3))}
    found = Originals(states)
    for offset, ev in enumerate([upsert("b", 4), upsert("b", 3), upsert("b", 4)]):
        found.offer(Rec("old", 0, offset, b"b", ev.model_dump_json().encode()))
    found.offer(Rec("old", 1, 5, b"a", upsert("a", 2).model_dump_json().encode()))
    found.offer(Rec("old", 1, 6, b"a", upsert("a", 3).model_dump_json().encode()))
    assert {k: (r.partition, r.offset) for k, r in found.found.items()} == {"a": (1, 5), "b": (0, 2)}


def old_layout() -> tuple[dict[str, tuple[Rec, DocState]], dict[bytes, Rec], dict[str, Rec]]:
    live = DocState(version=2, chunk_ids=["c1"], partition=0, offset=1)
    gone = DocState(version=3, deleted=True, partition=1, offset=4)
    states = states_of(latest([state_rec(0, "live", live.model_dump(mode="json")),
                               state_rec(1, "gone", gone.model_dump(mode="json"), partition=1),
                               state_rec(2, position_key(0), 2)]))
    applied = latest([
        Rec("old-applied", 0, 0, b"live", AppliedRecord(doc_id="live", version=2, op="upsert", chunk_ids=["c1"],
                                                         source_partition=0, source_offset=1,
                                                         applied_at="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
            .model_dump_json().encode()),
        Rec("old-applied", 0, 1, progress_key(0), ProgressRecord(partition=0, through=2).model_dump_json().encode())])
    originals = {"live": Rec("old-changes", 0, 1, b"live", upsert("live", 2).model_dump_json().encode(), 1234)}
    return states, applied, originals


def test_the_plan_copies_each_document_to_its_new_partition_once() -> None:
    states, applied, originals = old_layout()
    first = plan(states, applied, originals, 4, Existing())
    assert first.summary() == {"states_copied": 2, "applied_copied": 1, "changes_copied": 2, "states_kept": 0,
                               "applied_kept": 0, "changes_kept": 0, "changes_missing": 0}
    for copy in [*first.states, *first.applied, *first.changes]:
        key = json.loads(copy.key) if copy.key.startswith(b'"') else copy.key.decode()
        assert copy.partition == partition_of(key, 4)
    assert [c.timestamp for c in first.changes if c.key == b"live"] == [1234]
    # a second run finds all of it in the new layout and copies nothing
    again = plan(states, applied, originals, 4, Existing(
        states={"live": 2, "gone": 3}, applied={b"live": 2}, changes=frozenset({b"live", b"gone"})))
    assert (again.states, again.applied, again.changes) == ([], [], [])
    # newer versions already there (the new indexer ran) are never taken back
    newer = plan(states, applied, originals, 4, Existing(states={"live": 5}, applied={b"live": 5}))
    assert [c.key for c in newer.states] == [json.dumps("gone").encode()] and newer.applied == []


def test_the_indexer_finds_the_copies_stale_and_newer_events_not() -> None:
    states, applied, originals = old_layout()
    result = plan(states, applied, originals, 4, Existing())
    moved = {json.loads(c.key): DocState.model_validate_json(c.value) for c in result.states}
    copies = {c.key.decode(): c for c in result.changes}

    def at(key: str, offset: int, value: bytes | None) -> Sourced:
        event = parse_change(value, key.encode(), max_bytes=10_000)
        return Sourced(event, partition_of(key, 4), offset, tombstone=value is None)

    for key in ("live", "gone"):  # the copies land after whatever producers already published there
        assert winning_event(moved[key], [at(key, 50, copies[key].value)]) == (None, 1)
    newer = upsert("live", 3).model_dump_json().encode()
    assert winning_event(moved["live"], [at("live", 0, newer)])[0] is not None  # offset 0: not a replay
    assert winning_event(moved["gone"], [at("gone", 0, None)])[0] is not None  # a tombstone still deletes


def test_layouts_name_their_changelog_and_group_and_report_clashes() -> None:
    old, new = Layout("freshet", "f.changes", "f.applied", 4), Layout("freshet-v2", "f2.changes", "f.applied", 8)
    assert (new.state_changelog, new.indexer_group) == ("freshet-v2-indexer-doc-state-changelog", "freshet-v2-indexer")
    assert new.clashes(old) == ["f.applied"]
