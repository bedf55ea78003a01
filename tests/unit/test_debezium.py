"""Debezium envelopes -> freshet change events, against the envelopes of Debezium's documentation.

The fixtures (tests/unit/fixtures/debezium/, provenance in each file's ``origin`` and ``adapted``)
are the PostgreSQL and MySQL connector docs' examples of the ``customers`` table: create, update,
delete, tombstone, truncate and a snapshot read, with and without the JSON converter's schema
wrapper. The mapping reads that table as documents: the id, the first name as the text, the last
name as the title, the email as metadata.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from freshet.errors import InvalidEventError
from freshet.settings import Settings
from schemas.change import parse_change
from schemas.debezium import UNAVAILABLE, Forward, Mapping, Skip, translate

FIXTURES = Path(__file__).parent / "fixtures" / "debezium"
PG = Mapping(doc_id="id", content="first_name", title="last_name", version="source.lsn", metadata=("email",))
MYSQL = Mapping(doc_id="id", content="first_name", title="last_name", version="ts_ms", metadata=("email",))


def _record(name: str) -> tuple[bytes | None, bytes | None]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert data["origin"] and data["adapted"], "every fixture says where it came from"
    def enc(x: Any) -> bytes | None:
        return None if x is None else json.dumps(x).encode()
    return enc(data["key"]), enc(data["value"])


def _translate(name: str, mapping: Mapping, **kw: Any) -> Any:
    key, value = _record(name)
    return translate(value, key, mapping, **kw)


def test_postgresql_create_with_schema() -> None:
    out = _translate("postgresql-create", PG, event_id="dbz/0/7")
    assert isinstance(out, Forward) and out.event is not None
    ev = out.event
    assert (ev.doc_id, ev.op, ev.version, ev.content, ev.title) == ("1", "upsert", 24023128, "Anne", "Kretchmar")
    assert ev.metadata == {"email": "annek@noanswer.org"} and ev.tenant is None
    assert ev.event_id == "dbz/0/7"
    assert ev.event_time == datetime.fromtimestamp(1559033904863 / 1000, UTC)  # source.ts_ms: when the row changed
    assert out.key == "1"


def test_postgresql_create_without_schema_is_the_same_event() -> None:
    assert _translate("postgresql-create-no-schema", PG) == _translate("postgresql-create", PG)


def test_postgresql_update_reads_after_and_its_version() -> None:
    out = _translate("postgresql-update", PG)
    assert isinstance(out, Forward) and out.event is not None
    # the docs' example update carries the create's lsn (24023128): the indexer would call it stale.
    assert (out.event.content, out.event.version) == ("Anne Marie", 24023128)
    by_time = _translate("postgresql-update", Mapping(**{**_fields(PG), "version": "ts_us"}))
    assert by_time.event.version == 1465584025523514


def test_postgresql_delete_is_a_delete_at_its_lsn_and_the_tombstone_is_skipped() -> None:
    out = _translate("postgresql-delete", PG)
    assert out.key == "1" and out.event is not None
    assert (out.event.op, out.event.version, out.event.doc_id) == ("delete", 46523128, "1")
    assert _translate("postgresql-tombstone", PG) == Skip("tombstone")


def test_a_delete_whose_before_lacks_the_version_column_is_a_tombstone() -> None:
    out = _translate("postgresql-delete", Mapping(**{**_fields(PG), "version": "updated_at"}))
    assert out == Forward("1", None) and out.value is None  # REPLICA IDENTITY DEFAULT: before = {"id": 1}


def test_postgresql_truncate_is_skipped() -> None:
    assert _translate("postgresql-truncate", PG) == Skip("truncate")


def test_micro_timestamp_column_as_version() -> None:
    out = _translate("postgresql-update-micro-timestamp", Mapping(**{**_fields(PG), "version": "updated_at"}))
    assert out.event.version == 1529507596945104  # '2018-06-20 15:13:16.945104' in microseconds


def test_mysql_create_update_delete_tombstone_and_read() -> None:
    create = _translate("mysql-create", MYSQL)
    update = _translate("mysql-update-no-schema", MYSQL)
    read = _translate("mysql-read-snapshot", MYSQL)
    delete = _translate("mysql-delete-no-schema", MYSQL)
    assert (create.event.doc_id, create.event.content, create.event.version) == ("1004", "Anne", 1465491411815)
    assert (update.event.doc_id, update.event.content, update.event.version) == ("1004", "Anne Marie", 1465581029523)
    assert (read.event.doc_id, read.event.content, read.event.title) == ("1004", "Anne", "Kretchmar")
    assert (delete.key, delete.event.op, delete.event.version) == ("1004", "delete", 1465581902461)
    assert create.event.version < update.event.version < delete.event.version
    assert _translate("mysql-tombstone", MYSQL) == Skip("tombstone")


def test_a_delete_by_a_version_column_goes_one_above_the_rows_last_version() -> None:
    row = {"id": 7, "body": "x", "v": 1529507596945104}
    schema = "io.debezium.time.MicroTimestamp"
    upsert = translate(_envelope(row, schema), None, BY_V)
    delete = translate(_envelope(row, schema, op="d", before=row, after=None), None, BY_V)
    assert delete.event.op == "delete" and delete.event.version == upsert.event.version + 1


def test_mysql_binlog_position_as_version() -> None:
    out = _translate("mysql-update-no-schema", Mapping(**{**_fields(MYSQL), "version": "source.pos"}))
    assert out.event.version == 484


def test_the_forwarded_event_parses_on_the_changes_topic() -> None:
    out = _translate("mysql-create", Mapping(**{**_fields(MYSQL), "tenant": "last_name"}))
    assert parse_change(out.value, out.key.encode(), max_bytes=10_000) == out.event
    assert out.key == "Kretchmar\x1f1004"


def _envelope(row: dict[str, Any], schema_name: str | None = None, **extra: Any) -> bytes:
    payload = {"before": None, "after": row, "source": {"ts_ms": 1, "lsn": 5}, "op": "c", **extra}
    if schema_name is None:
        return json.dumps(payload).encode()
    fields = [{"type": "int64", "optional": False, "field": "v", "name": schema_name}]
    schema = {"type": "struct", "fields": [{"type": "struct", "fields": fields, "field": "after"}]}
    return json.dumps({"schema": schema, "payload": payload}).encode()


ROW = {"id": 7, "body": "text"}
BY_V = Mapping(version="v")


@pytest.mark.parametrize(("value", "schema_name", "version"), [
    (1529507596945, "io.debezium.time.Timestamp", 1529507596945000),
    (1529507596945104, "io.debezium.time.MicroTimestamp", 1529507596945104),
    (1529507596945104123, "io.debezium.time.NanoTimestamp", 1529507596945104),
    (1529507596945, "org.apache.kafka.connect.data.Timestamp", 1529507596945000),
    (17702, "io.debezium.time.Date", 17702 * 86_400_000_000),
    ("2018-06-20T15:13:16.945104Z", None, 1529507596945104),  # io.debezium.time.ZonedTimestamp
    ("2018-06-20T17:13:16.945104123+02:00", None, 1529507596945104),  # nanoseconds, another offset
    ("2018-06-20T15:13:16Z", None, 1529507596000000),
    (42, None, 42),  # an integer without a schema is taken as it is
    ("42", None, 42),
])
def test_version_encodings(value: Any, schema_name: str | None, version: int) -> None:
    out = translate(_envelope({**ROW, "v": value}, schema_name), None, BY_V)
    assert isinstance(out, Forward) and out.event is not None and out.event.version == version


def test_timestamps_keep_their_order_across_encodings() -> None:
    earlier = translate(_envelope({**ROW, "v": 1529507596945}, "io.debezium.time.Timestamp"), None, BY_V)
    later = translate(_envelope({**ROW, "v": "2018-06-20T15:13:16.946Z"}), None, BY_V)
    assert later.event.version > earlier.event.version


@pytest.mark.parametrize(("value", "key", "mapping", "needle"), [
    (b"not json", None, PG, "not JSON"),
    (b"\xff\xfe", None, PG, "not UTF-8"),
    (b"[1, 2]", None, PG, "not a change envelope"),
    (json.dumps({"id": 1, "body": "x"}).encode(), None, Mapping(), "no 'op'"),
    (_envelope(ROW, op="x"), None, Mapping(), "'op' is 'x'"),
    (json.dumps({"op": "u", "after": None}).encode(), None, Mapping(), "without an 'after'"),
    (_envelope({"id": 7}), None, Mapping(version="ts_ms"), "mapped column 'body'"),
    (_envelope({"body": "x"}), None, Mapping(version="ts_ms"), "mapped column 'id'"),
    (_envelope(ROW), None, Mapping(version="source.pos"), "'source.pos'"),
    (_envelope(ROW), None, Mapping(version="updated_at"), "mapped column 'updated_at'"),
    (_envelope({**ROW, "v": "soon"}), None, BY_V, "not an integer or a timestamp"),
    (_envelope({**ROW, "v": -5}), None, BY_V, "outside"),
    (_envelope({**ROW, "v": True}), None, BY_V, "not an integer"),
    (_envelope({"id": 7, "body": UNAVAILABLE}), None, Mapping(), "REPLICA IDENTITY FULL"),
    (_envelope({"id": "a\x1fb", "body": "x"}), None, Mapping(), "no valid change event"),
    (_envelope({"id": None, "body": "x"}), None, Mapping(), "not an identity"),
    (_envelope(ROW), None, Mapping(tenant="org"), "mapped column 'org'"),
    (json.dumps({"op": "d", "before": None}).encode(), None, Mapping(), "mapped column 'id'"),
    (json.dumps({"op": "d", "before": None}).encode(), b"17", Mapping(), "not a row's key columns"),
    (json.dumps({"op": "d", "before": {"id": 1}}).encode(), None, Mapping(version="source.lsn"), "'source.lsn'"),
])
def test_bad_envelopes_are_debezium_errors(value: bytes | None, key: bytes | None, mapping: Mapping,
                                           needle: str) -> None:
    with pytest.raises(InvalidEventError) as err:
        translate(value, key, mapping)
    assert err.value.reason == "debezium"
    assert needle in str(err.value)


def test_null_content_is_empty_text_and_null_metadata_is_left_out() -> None:
    out = translate(_envelope({"id": 7, "body": None, "tags": None, "n": {"a": 1}}), None,
                    Mapping(metadata=("tags", "n"), version="source.lsn"))
    assert out.event.content == "" and out.event.metadata == {"n": '{"a": 1}'}


def test_a_delete_without_before_takes_the_key() -> None:
    value = json.dumps({"op": "d", "before": None, "after": None, "source": {"lsn": 12}}).encode()
    out = translate(value, b'{"schema": {}, "payload": {"id": 9}}', Mapping())
    assert out.key == "9" and out.event is not None and out.event.version == 12


def test_settings_make_the_mapping() -> None:
    s = Settings(debezium_doc_id="slug", debezium_content="body", debezium_title="title",
                 debezium_version="updated_at", debezium_metadata="lang, tags,", debezium_tenant="org")
    assert s.debezium_mapping == Mapping(doc_id="slug", content="body", title="title", version="updated_at",
                                         metadata=("lang", "tags"), tenant="org")


def _fields(m: Mapping) -> dict[str, Any]:
    return {name: getattr(m, name) for name in Mapping.__dataclass_fields__}


def test_the_bridge_plans_forwards_and_dead_letters_in_order() -> None:
    from schemas.deadletter import REASON, SOURCE_OFFSET, WORKER
    from workers.debezium_bridge import SOURCE_HEADER, Record, plan

    def rec(offset: int, name: str | None, value: bytes | None = None) -> Record:
        key, val = _record(name) if name else (b'{"id": 1}', value)
        return Record("dbz", 0, offset, key, val, (("h", b"1"),))

    records = [rec(0, "postgresql-create"), rec(1, None, b"nope"), rec(2, "postgresql-delete"),
               rec(3, "postgresql-tombstone"), rec(4, None, json.dumps({"before": None}).encode())]
    out, counts = plan(records, PG, changes="chg", dead_letters="dlq", max_bytes=10_000)
    assert [(o.topic, o.source.offset) for o in out] == [("chg", 0), ("dlq", 1), ("chg", 2), ("dlq", 4)]
    assert (out[0].key, dict(out[0].headers)[SOURCE_HEADER]) == (b"1", b"dbz:0:0")
    assert json.loads(out[0].value or b"")["event_id"] == "dbz:0:0"
    assert json.loads(out[2].value or b"")["op"] == "delete"
    dead = dict(out[3].headers)
    assert (dead[REASON], dead[SOURCE_OFFSET], dead[WORKER], dead["h"]) == (b"debezium", b"4", b"debezium-bridge", b"1")
    assert out[1].value == b"nope" and b"not JSON" in dict(out[1].headers)["freshet.error"]
    assert counts == {"upserted": 1, "deleted": 1, "skipped_tombstone": 1, "dead_lettered": 2}


def test_settings_refuse_a_bridge_that_cannot_work() -> None:
    from pydantic import ValidationError

    for bad in ({"debezium_topic": "bad topic!"}, {"debezium_topic": "freshet.changes"},
                {"debezium_topic": "dbz", "debezium_version": " "}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]
    assert Settings(debezium_topic="pg.public.docs").debezium_topic == "pg.public.docs"


def test_a_bridge_that_dies_fails_healthz(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from streams import bridge
    from streams.web import Health
    from workers.debezium_bridge import DebeziumBridge

    class App:  # the one thing register() asks of a Faust app: a task decorator
        tasks: list[Any] = []

        def task(self, fn: Any) -> Any:
            self.tasks.append(fn)
            return fn

    async def broken(self: DebeziumBridge) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(DebeziumBridge, "run", broken)
    app, health = App(), Health("indexer", ready=True)
    bridge.register(app, Settings(), health)  # type: ignore[arg-type]
    assert app.tasks == []  # no topic: no bridge
    bridge.register(app, Settings(debezium_topic="dbz"), health)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        asyncio.run(app.tasks[0]())
    assert not health.healthy and "debezium bridge died: RuntimeError: a bug" in health.failure


def test_a_record_kafka_refuses_becomes_a_dead_letter_then_a_bare_one() -> None:
    from schemas.deadletter import REASON, TRUNCATED
    from workers.debezium_bridge import Outgoing, Record, dead_letter, refused

    source = Record("dbz", 1, 9, b"k", b"v" * 50, (("h", b"1"),))
    forward = Outgoing("chg", b"k", b"{}", [], source)
    letter = refused(forward, ValueError("too large"), "dlq", 10_000)
    assert (letter.topic, letter.value, dict(letter.headers)[REASON]) == ("dlq", b"v" * 50, b"debezium")
    assert b"Kafka refuses the record for 'chg'" in dict(letter.headers)["freshet.error"]
    bare = refused(dead_letter(source, "debezium", "x", "dlq", 10_000), ValueError("no"), "dlq", 10_000)
    assert bare.key is None and bare.value is None and "h" not in dict(bare.headers)
    assert dict(bare.headers)[REASON] == b"debezium" and b"key and value dropped" in dict(bare.headers)[TRUNCATED]
