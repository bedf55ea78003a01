import json
from pathlib import Path

import pytest

from freshet.errors import InvalidEventError
from schemas.change import ChangeEvent, parse_change

SHARED_EDITS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "fastapi-docs-edits.jsonl"


def _bytes(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_valid_upsert_parses() -> None:
    ev = parse_change(_bytes(doc_id="a.md", op="upsert", version=3, content="# A\n\ntext", tenant="t1"),
                      b"t1\x1fa.md", max_bytes=10_000)
    assert (ev.doc_id, ev.op, ev.version, ev.tenant, ev.key) == ("a.md", "upsert", 3, "t1", "t1\x1fa.md")
    assert ev.content_type == "text/markdown"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[1, 2]", "schema"),
        (_bytes(doc_id="a", op="upsert", version=1), "missing_content"),
        (_bytes(doc_id="a", op="rename", version=1), "schema"),
        (_bytes(doc_id="a", op="upsert", version=1, content="x", colour="red"), "schema"),
        (_bytes(doc_id="a", op="upsert", version=1, content="x", schema_version="2.0"), "unknown_schema_version"),
        (_bytes(doc_id="a", op="upsert", version=-1, content="x"), "schema"),
    ],
)
def test_bad_input_has_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_change(value, b"a", max_bytes=10_000)
    assert err.value.reason == reason
    assert str(err.value)


def test_oversized_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_change(_bytes(doc_id="a", op="upsert", version=1, content="x" * 200), b"a", max_bytes=100)
    assert err.value.reason == "oversized"
    assert "FRESHET_MAX_DOCUMENT_BYTES" in str(err.value)


def test_tombstone_deletes_the_keyed_document() -> None:
    ev = parse_change(None, b"tenant-9\x1fdocs/x.md", max_bytes=100)
    assert (ev.op, ev.doc_id, ev.tenant) == ("delete", "docs/x.md", "tenant-9")
    ev = parse_change(None, b"docs/en/y.md", max_bytes=100)
    assert (ev.doc_id, ev.tenant) == ("docs/en/y.md", None)
    with pytest.raises(InvalidEventError):
        parse_change(None, None, max_bytes=100)


def test_minor_schema_version_is_accepted() -> None:
    ev = parse_change(_bytes(doc_id="a", op="delete", version=2, schema_version="1.4"), b"a", max_bytes=1000)
    assert ev.op == "delete"


def test_shared_edit_history_events_are_valid_as_they_are() -> None:
    with SHARED_EDITS.open(encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(5)]
    for line in lines:
        assert isinstance(ChangeEvent.model_validate_json(line), ChangeEvent)
