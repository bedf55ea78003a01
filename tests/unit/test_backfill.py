"""The backfill's pure logic: discovering and versioning inputs, reading JSON lines, planning what is
unchanged and what to delete, and moving the resume position only past acknowledged events."""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path, PurePosixPath

import pytest

from freshet.backfill import Options, Summary, _publish_items, discover, read_items
from freshet.client import Position
from freshet.errors import FreshetError, TransientError
from schemas.change import MAX_VERSION, ChangeEvent, document_key
from workers.backfill_plan import (
    SOURCE_FIELD,
    Acks,
    Item,
    Latest,
    is_pending,
    latest_by_key,
    line_item,
    parse_version,
    plan_deletes,
    plan_upsert,
)
from workers.planning import Sourced

SRC = "/data/docs"


def write(root: Path, rel: str, text: str | bytes, mtime_ns: int = 1_700_000_000_123_456_789) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.utime(path, ns=(mtime_ns, mtime_ns))


def items_of(src: Path, **opts: object) -> list[Item]:
    items, _ = read_items(src, Options(**opts), SRC, max_bytes=1000)  # type: ignore[arg-type]
    return list(items)


def test_discover_sorts_by_relative_path_matches_globs_and_skips_dot_entries(tmp_path: Path) -> None:
    for rel in ("b.md", "a/z.txt", "a/b/c.markdown", "notes.rst", ".hidden.md", ".git/x.md", "a-b.md"):
        write(tmp_path, rel, "x")
    found = discover(tmp_path, ("*.md", "*.markdown", "*.txt"))
    assert found == [PurePosixPath(p) for p in ("a-b.md", "a/b/c.markdown", "a/z.txt", "b.md")]
    assert discover(tmp_path, ("a/*.txt",)) == [PurePosixPath("a/z.txt")]


def test_a_directory_becomes_upserts_keyed_by_path_versioned_by_mtime(tmp_path: Path) -> None:
    write(tmp_path, "guide/intro.md", "# Intro\n\nhello", mtime_ns=1_700_000_000_123_456_789)
    write(tmp_path, "notes.txt", "plain words", mtime_ns=1_700_000_001_000_000_000)
    write(tmp_path, "bad.md", b"\xff\xfe not utf-8")
    write(tmp_path, "big.md", "x" * 1001)
    items = items_of(tmp_path, prefix="kb/", tenant="acme")
    assert [i.cursor for i in items] == ["bad.md", "big.md", "guide/intro.md", "notes.txt"]
    intro, notes = items[2].event, items[3].event
    assert intro is not None and notes is not None
    assert (intro.doc_id, intro.tenant, intro.version, intro.content_type, intro.content) == (
        "kb/guide/intro.md", "acme", 1_700_000_000_123_456, "text/markdown", "# Intro\n\nhello")
    assert intro.metadata == {SOURCE_FIELD: SRC} and items[2].key == document_key("acme", "kb/guide/intro.md")
    assert (notes.content_type, notes.version) == ("text/plain", 1_700_000_001_000_000)
    # unreadable files are errors naming the file, yet their documents count as present (no delete)
    assert items[0].event is None and "bad.md" in (items[0].error or "") and "utf-8" in (items[0].error or "")
    assert items[0].key == document_key("acme", "kb/bad.md")
    assert "1001 bytes, above FRESHET_MAX_DOCUMENT_BYTES" in (items[1].error or "")


def test_json_lines_take_their_version_from_the_line_number_or_a_field(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc_id": "a", "content": "A", "title": "T", "metadata": {"lang": "en"}}\n'
                    "\n"
                    '{"doc_id": "b", "content": "B", "tenant": "t2"}\n', encoding="utf-8")
    a, b = items_of(path, tenant="t1")
    assert a.event == ChangeEvent(doc_id="a", tenant="t1", op="upsert", version=1, content="A", title="T",
                                  metadata={"lang": "en", SOURCE_FIELD: SRC})
    assert b.event is not None and (b.cursor, b.event.version, b.event.tenant) == (3, 3, "t2")

    line = b'{"doc_id": "c", "content": "C", "updated": "2024-05-01T12:00:00.5+02:00"}'
    item = line_item(7, line, where="f.jsonl", version_field="updated", tenant=None, source=SRC)
    assert item is not None and item.event is not None
    assert item.event.version == 1_714_557_600_500_000 and "updated" not in item.event.model_dump()
    item = line_item(7, b'{"doc_id": "c", "content": "C", "event_time": "2024-05-01T10:00:00Z"}',
                     where="f.jsonl", version_field="event_time", tenant=None, source=SRC)
    assert item is not None and item.event is not None and item.event.version == 1_714_557_600_000_000
    assert item.event.event_time is not None  # a contract field as the version field stays in the event


@pytest.mark.parametrize(("line", "field", "why", "named"), [
    (b'{"doc_id": "a", "content": ', None, "not JSON", False),
    (b'["a"]', None, "must be a JSON object", False),
    (b'{"doc_id": "a"}', None, "needs 'content'", True),
    (b'{"doc_id": "a", "content": "x", "body": "y"}', None, "unknown field(s) 'body'", True),
    (b'{"doc_id": "a", "content": "x", "version": 3}', None, "'version'", True),
    (b'{"doc_id": "a", "content": "x"}', "rev", "no 'rev' field", True),
    (b'{"doc_id": "a", "content": "x", "rev": 1.5}', "rev", "neither an integer", True),
    (b'{"doc_id": "a", "content": "x", "rev": "2024-05-01T10:00:00"}', "rev", "no UTC offset", True),
    (b'{"doc_id": "a", "content": "x", "metadata": {"source": "other"}}', None, "names the backfill source", True),
    (b'{"doc_id": "a\\u0001", "content": "x"}', None, "doc_id", False),
])
def test_a_bad_line_is_an_error_naming_file_and_line(line: bytes, field: str | None, why: str, named: bool) -> None:
    item = line_item(12, line, where="in.jsonl", version_field=field, tenant=None, source=SRC)
    assert item is not None and item.event is None and item.cursor == 12
    assert (item.error or "").startswith("in.jsonl:12: ") and why in (item.error or ""), item.error
    assert (item.key == "a") is named  # a line naming its document keeps it present for --delete-missing


def test_parse_version() -> None:
    assert parse_version(5) == 5 and parse_version("42") == 42
    assert parse_version("1970-01-01T00:00:01.000002Z") == 1_000_002  # microseconds, as the files' mtimes
    for bad in (True, 1.0, -1, MAX_VERSION + 1, "1969-12-31T23:59:59Z", "soon", None):
        with pytest.raises(ValueError):
            parse_version(bad)


def up(doc_id: str, version: int, source: str | None = SRC, tenant: str | None = None) -> ChangeEvent:
    return ChangeEvent(doc_id=doc_id, tenant=tenant, op="upsert", version=version, content="x",
                       metadata={SOURCE_FIELD: source} if source else {})


def src(ev: ChangeEvent, offset: int, partition: int = 0, tombstone: bool = False) -> Sourced:
    return Sourced(ev, partition, offset, tombstone=tombstone)


def test_latest_folds_each_documents_events_as_the_indexer_would() -> None:
    latest = latest_by_key([
        src(up("a", 5), 3), src(up("a", 3), 4),  # read out of order; v3 after v5 is stale
        src(up("b", 1), 0, partition=1), src(ChangeEvent(doc_id="b", op="delete", version=0), 1, 1, tombstone=True),
        src(up("c", 2, source="elsewhere"), 0), src(ChangeEvent(doc_id="c", op="delete", version=4), 1),
        src(up("a", 7, tenant="t"), 9), src(up("a", 4), 0),
    ])
    assert latest == {"a": Latest(5, False, SRC), "b": Latest(1, True, None), "c": Latest(4, True, None),
                      document_key("t", "a"): Latest(7, False, SRC)}


def test_plan_upsert_skips_what_the_topic_has_and_revives_a_deleted_document_above_its_delete() -> None:
    ev = up("a", 10)
    assert plan_upsert(ev, None) == ev and plan_upsert(ev, Latest(9, False, SRC)) == ev
    assert plan_upsert(ev, Latest(10, False, SRC)) is None and plan_upsert(ev, Latest(11, False, "x")) is None
    revived = plan_upsert(ev, Latest(12, True, None))
    assert revived is not None and revived.version == 13 and revived.content == ev.content


def test_plan_deletes_only_this_sources_live_documents_that_are_gone() -> None:
    latest = {"gone": Latest(5, False, SRC), "kept": Latest(5, False, SRC), "deleted": Latest(6, True, None),
              "other": Latest(5, False, "/elsewhere"), document_key("t", "gone"): Latest(MAX_VERSION, False, SRC)}
    deletes = plan_deletes(latest, {"kept"}, SRC)
    assert [(d.doc_id, d.tenant, d.op, d.version) for d in deletes] == [
        ("gone", None, "delete", 6), ("gone", "t", "delete", MAX_VERSION)]


def test_is_pending() -> None:
    assert is_pending("a.md", None) and is_pending("b.md", "a.md") and not is_pending("a.md", "a.md")
    assert is_pending(10, 9) and not is_pending(9, 10)  # numbers, not strings: 10 comes after 9


def done(ok: bool = True) -> Future[Position]:
    fut: Future[Position] = Future()
    if ok:
        fut.set_result(Position("t", 0, 0))
    else:
        fut.set_exception(TransientError("publish failed"))
    return fut


def test_the_position_moves_only_past_a_prefix_of_acknowledged_events() -> None:
    saved: list[tuple[object, int]] = []
    acks = Acks(lambda after, n: saved.append((after, n)), every=2)
    late: Future[Position] = Future()
    acks.add("a", done())
    acks.add("b", late)  # not acknowledged yet
    acks.add("c", done())
    acks.add("d", None)  # nothing sent (unchanged)
    assert (acks.after, saved) == ("a", [])
    late.set_result(Position("t", 1, 0))
    acks.drain()
    assert acks.after == "d" and saved == [("b", 2)]
    with pytest.raises(TransientError):  # a failed publish stops the run, the position before it
        acks.add("e", done(ok=False))
    acks.salvage()
    assert acks.after == "d" and saved[-1] == ("d", 3)


class Publisher:
    """Stands in for DocumentPublisher: acknowledges at once, or fails from the ``fail_at``-th event."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[ChangeEvent] = []
        self.fail_at = fail_at

    def publish(self, event: ChangeEvent) -> Future[Position]:
        self.sent.append(event)
        return done(ok=self.fail_at is None or len(self.sent) < self.fail_at)


def test_an_interrupted_run_resumes_after_the_last_acknowledged_event(tmp_path: Path) -> None:
    for i in range(6):
        write(tmp_path, f"d{i}.md", f"# Doc {i}")
    saved: list[tuple[object, int]] = []
    acks = Acks(lambda after, n: saved.append((after, n)), every=1)
    crashing = Publisher(fail_at=4)
    with pytest.raises(TransientError):
        _publish_items(iter(items_of(tmp_path)), 0, None, Options(), {}, crashing, acks, {},  # type: ignore[arg-type]
                       Summary())
    acks.salvage()
    assert saved[-1] == ("d2.md", 3)

    # the rerun (latest from the topic says d0 is unchanged, d3 already there in a newer version)
    summary, again = Summary(), Publisher()
    latest = {"d3.md": Latest(2**62, False, SRC)}
    present, unnamed = _publish_items(iter(items_of(tmp_path)), 0, saved[-1][0], Options(), latest, again,  # type: ignore[arg-type]
                                      Acks(lambda *_: None, 1), {}, summary)
    assert [e.doc_id for e in again.sent] == ["d4.md", "d5.md"]
    assert (summary.resumed, summary.unchanged, summary.published) == (3, 1, 2)
    assert present == {f"d{i}.md" for i in range(6)} and unnamed == 0


def test_strict_stops_at_the_first_bad_input_and_skipping_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"doc_id": "a", "content": "A"}\nnot json\n{"doc_id": "c", "content": "C"}\n', encoding="utf-8")
    with pytest.raises(FreshetError, match=r"in.jsonl:2: not JSON \(--strict\)"):
        _publish_items(iter(items_of(path)), 0, None, Options(strict=True), {}, Publisher(),  # type: ignore[arg-type]
                       Acks(lambda *_: None, 1), {}, Summary())
    summary, pub = Summary(), Publisher()
    _, unnamed = _publish_items(iter(items_of(path)), 0, None, Options(), {}, pub,  # type: ignore[arg-type]
                                Acks(lambda *_: None, 1), {}, summary)
    assert [e.doc_id for e in pub.sent] == ["a", "c"] and (summary.errors, unnamed) == (1, 1)
