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


# --- hostile records (each of these once escaped parse_change or let one identity name another) ---

@pytest.mark.parametrize("key", [b"t\x1f", b"\x1f", b"x" * 600, b"t\x1fa\x1fb", b"\x1fdoc.md", b"doc\x00.md",
                                 b"tenant\x1fdoc\n.md", b"a" * 129 + b"\x1fdoc.md"])
def test_a_tombstone_with_a_key_that_is_no_identity_is_a_schema_error(key: bytes) -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_change(None, key, max_bytes=100)
    assert err.value.reason == "schema"
    assert repr(key.decode())[:40] in str(err.value) or "key" in str(err.value)


def test_a_deeply_nested_value_is_invalid_json_not_a_crash() -> None:
    value = b'{"doc_id": "a", "op": "upsert", "version": 1, "content": "x", "metadata": ' + b"[" * 100_000 \
        + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidEventError) as err:
        parse_change(value, b"a", max_bytes=1_000_000)
    assert err.value.reason == "invalid_json"
    assert "nested" in str(err.value)


@pytest.mark.parametrize(("field", "value"), [
    ("doc_id", "acme\x1fsecret.md"), ("doc_id", "a\x00b"), ("doc_id", "line\nbreak"), ("doc_id", "del\x7f"),
    ("doc_id", "c1\x85"), ("tenant", "ac\x1fme"), ("tenant", "t\tab"),
])
def test_identities_with_separators_or_control_characters_are_refused(field: str, value: str) -> None:
    fields: dict[str, object] = {"doc_id": "secret.md", "op": "upsert", "version": 1, "content": "x", field: value}
    with pytest.raises(InvalidEventError) as err:
        parse_change(_bytes(**fields), b"k", max_bytes=10_000)
    assert err.value.reason == "schema"
    assert field in str(err.value)


def test_a_tenantless_document_can_no_longer_share_a_tenant_documents_key() -> None:
    owned = parse_change(_bytes(doc_id="secret.md", tenant="acme", op="upsert", version=1, content="x"),
                         b"acme\x1fsecret.md", max_bytes=10_000)
    assert owned.key == "acme\x1fsecret.md"
    with pytest.raises(InvalidEventError):
        parse_change(_bytes(doc_id="acme\x1fsecret.md", op="upsert", version=2, content="x"),
                     b"acme\x1fsecret.md", max_bytes=10_000)


def test_versions_beyond_int64_are_refused() -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_change(_bytes(doc_id="a", op="upsert", version=2**63, content="x"), b"a", max_bytes=10_000)
    assert err.value.reason == "schema"
