"""freshet dlq's pure part (workers.dead_letters, workers.dead_letter_replay) and its rendering: reading dead
letters, grouping, positions, replay planning and records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from freshet.dlq import show_lines
from freshet.errors import FreshetError
from schemas.deadletter import REPLAY_DEAD_LETTER, REPLAY_OF, TRUNCATED, dead_letter_headers
from workers.dead_letter_replay import (
    ReplayPlan,
    Selection,
    ledger_from,
    parse_since,
    plan_replay,
    replay_record,
    summary_line,
)
from workers.dead_letters import DeadLetter, from_record, group_letters, resolve_position

DLT = "t.deadletter"
CHANGES = "t.changes"
T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def letter(partition: int, offset: int, *, reason: str = "oversized", source: tuple[str, int, int] = (CHANGES, 1, 7),
           value: bytes | None = b'{"doc_id": "a.md"}', extra: list[tuple[str, bytes]] | None = None,
           minutes: int = 0) -> DeadLetter:
    topic, sp, so = source
    headers = dead_letter_headers([("trace", b"t-1"), *(extra or [])], reason=reason, error=f"{reason}: why",
                                  topic=topic, partition=sp, offset=so, worker="indexer")
    ts = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return from_record(SimpleNamespace(partition=partition, offset=offset, timestamp=ts, key=b"a.md", value=value,
                                       headers=headers))


def test_a_record_reads_as_a_dead_letter_with_its_source_and_origin() -> None:
    d = letter(0, 3, extra=[(TRUNCATED, b"value 5000 bytes, kept 10")])
    assert (d.reason, d.source, d.worker, d.position) == ("oversized", f"{CHANGES}:1:7", "indexer", "0:3")
    assert d.truncated == "value 5000 bytes, kept 10" and d.origin == d.source
    assert d.original_headers == [("trace", b"t-1")]
    assert d.timestamp == T0
    again = letter(0, 4, source=(CHANGES, 1, 40), extra=[(REPLAY_OF, f"{CHANGES}:1:7".encode())])
    assert again.replay_of == f"{CHANGES}:1:7" and again.origin == f"{CHANGES}:1:7"


def test_a_record_without_freshet_headers_still_reads() -> None:
    d = from_record(SimpleNamespace(partition=0, offset=0, timestamp=-1, key=None, value=b"x", headers=None))
    assert d.reason == "unknown" and d.source_partition == -1 and d.timestamp is None and d.truncated is None


def test_groups_by_reason_and_source_topic_with_ranges_and_samples() -> None:
    letters = [letter(1, 5, source=(CHANGES, 0, 9), minutes=2), letter(0, 2, source=(CHANGES, 0, 4), minutes=1),
               letter(0, 3, source=(CHANGES, 1, 8), minutes=3, extra=[(TRUNCATED, b"cut")]),
               letter(0, 4, reason="invalid_json", value=b"{not   json\n", minutes=4),
               letter(1, 6, reason="invalid_json", source=("t.requests", 0, 1), minutes=5)]
    groups = group_letters(letters)
    assert [(g.reason, g.source_topic, g.count) for g in groups] == [
        ("oversized", CHANGES, 3), ("invalid_json", CHANGES, 1), ("invalid_json", "t.requests", 1)]
    big = groups[0]
    assert (big.first, big.last, big.truncated) == ("0:2", "0:3", 1)
    assert big.source_offsets == {0: [4, 9], 1: [8, 8]}
    assert big.first_at == (T0 + timedelta(minutes=1)).isoformat()
    assert groups[1].value_sample == "{not json" and groups[1].error_sample == "invalid_json: why"


def test_positions_partition_offset_or_an_unambiguous_bare_offset() -> None:
    letters = [letter(0, 3), letter(1, 3), letter(1, 4)]
    assert resolve_position("1:3", letters, DLT) is letters[1]
    assert resolve_position("4", letters, DLT) is letters[2]
    with pytest.raises(FreshetError, match="0:3, 1:3"):
        resolve_position("3", letters, DLT)
    with pytest.raises(FreshetError, match="no dead letter"):
        resolve_position("2:3", letters, DLT)
    with pytest.raises(FreshetError, match="PARTITION:OFFSET"):
        resolve_position("p1/3", letters, DLT)


def test_since_takes_a_time_or_a_duration_ago() -> None:
    assert parse_since("2h", T0) == T0 - timedelta(hours=2)
    assert parse_since("90s", T0) == T0 - timedelta(seconds=90)
    assert parse_since("2026-12-05T09:00:00Z", T0) == T0 - timedelta(hours=1)
    assert parse_since("2026-12-05T09:00:00", T0) == T0 - timedelta(hours=1)
    with pytest.raises(FreshetError, match="--since"):
        parse_since("yesterday", T0)


def _plan(letters: list[DeadLetter], ledger_headers: list[list[tuple[str, bytes]]] | None = None,
          selection: Selection | None = None, again: bool = False) -> ReplayPlan:
    return plan_replay(letters, ledger_from(ledger_headers or []), selection or Selection(), dead_letter_topic=DLT,
                       replayable=frozenset({CHANGES}), again=again)


def test_replay_skips_truncated_foreign_and_duplicate_dead_letters() -> None:
    whole = letter(0, 1, source=(CHANGES, 0, 1))
    cut = letter(0, 2, source=(CHANGES, 0, 2), extra=[(TRUNCATED, b"cut")])
    request = letter(0, 3, source=("t.requests", 0, 5), reason="schema")
    twice = letter(0, 4, source=(CHANGES, 0, 1))  # the same source record dead-lettered again
    plan = _plan([twice, request, cut, whole])
    assert plan.send == [whole] and plan.matched == 4
    assert plan.skipped == {"truncated": 1, "not_replayable": 1, "duplicate": 1}
    assert summary_line(plan, dry_run=False) == (
        "dlq replay: replayed 1 of 4 matching; skipped: 1 truncated, 1 not replayable, 1 duplicate")


def test_replay_skips_what_the_changes_topic_says_was_replayed() -> None:
    a, b = letter(0, 1, source=(CHANGES, 0, 1)), letter(0, 2, source=(CHANGES, 0, 2))
    c = letter(1, 0, source=(CHANGES, 1, 0))
    # a was replayed (its origin named); b's dead-letter position is named
    ledger = [[("trace", b"x"), (REPLAY_OF, f"{CHANGES}:0:1".encode())], [(REPLAY_DEAD_LETTER, f"{DLT}:0:2".encode())]]
    plan = _plan([a, b, c], ledger)
    assert plan.send == [c] and plan.skipped == {"already_replayed": 2}
    assert _plan([a, b, c], ledger, again=True).send == [a, b, c]


def test_a_dead_letter_of_a_replay_is_not_replayed_again_by_default() -> None:
    # the replay of a (origin changes:0:1) was dead-lettered again: its dead letter carries the origin
    a = letter(0, 1, source=(CHANGES, 0, 1))
    again = letter(0, 9, source=(CHANGES, 0, 30), extra=[(REPLAY_OF, f"{CHANGES}:0:1".encode())])
    ledger = [[(REPLAY_OF, f"{CHANGES}:0:1".encode()), (REPLAY_DEAD_LETTER, f"{DLT}:0:1".encode())]]
    assert _plan([a, again], ledger).skipped == {"already_replayed": 2}
    forced = _plan([a, again], ledger, again=True)
    assert forced.send == [a] and forced.skipped == {"duplicate": 1}  # one per origin


def test_the_selection_filters_by_reason_source_topic_and_time() -> None:
    letters = [letter(0, 1, reason="oversized", minutes=0), letter(0, 2, reason="schema", minutes=10),
               letter(0, 3, reason="oversized", source=("old.changes", 0, 3), minutes=20)]
    assert [d.offset for d in _plan(letters, selection=Selection(reasons=frozenset({"oversized"}))).send] == [1]
    since = Selection(since=T0 + timedelta(minutes=5))
    plan = _plan(letters, selection=since)
    assert plan.matched == 2 and [d.offset for d in plan.send] == [2]
    old = plan_replay(letters, ledger_from([]), Selection(source_topics=frozenset({"old.changes"})),
                      dead_letter_topic=DLT, replayable=frozenset({CHANGES, "old.changes"}))
    assert [d.offset for d in old.send] == [3]


def test_a_replay_record_keeps_the_original_bytes_and_names_its_origin() -> None:
    d = letter(2, 11, source=(CHANGES, 1, 7), extra=[("freshet.replay.of", b"old")])
    rec = replay_record(d, dead_letter_topic=DLT, changes_topic=CHANGES, partitions=4)
    assert rec["key"] == b"a.md" and rec["value"] == b'{"doc_id": "a.md"}' and rec["partition"] == 1
    assert rec["headers"] == [("trace", b"t-1"), (REPLAY_OF, b"old"), (REPLAY_DEAD_LETTER, f"{DLT}:2:11".encode())]
    assert not any(k.startswith("freshet.") and k not in (REPLAY_OF, REPLAY_DEAD_LETTER) for k, _ in rec["headers"])
    other = letter(0, 1, source=("old.changes", 9, 7))
    assert replay_record(other, dead_letter_topic=DLT, changes_topic=CHANGES, partitions=4)["partition"] is None


def test_show_pretty_prints_json_and_marks_a_truncated_value() -> None:
    text = "\n".join(show_lines(letter(0, 1, value=b'{"doc_id":"a.md","version":3}'), DLT))
    assert '  "version": 3' in text and "truncated  no" in text and "  trace: t-1" in text
    cut = "\n".join(show_lines(letter(0, 2, value=b'{"doc_id": "a', extra=[(TRUNCATED, b"value 9 bytes")]), DLT))
    assert "truncated  value 9 bytes" in cut and "not JSON, cut" in cut
    assert "value: null" in "\n".join(show_lines(letter(0, 3, value=None), DLT))
