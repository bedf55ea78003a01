"""Debezium change envelopes translated into freshet change events (pure; no I/O).

A Debezium connector writes one record per row change: the key holds the row's primary key, the
value an envelope ``{before, after, source, op, ts_ms}`` with ``op`` ``c`` (create), ``u``
(update), ``d`` (delete) or ``r`` (snapshot read); after a delete comes a tombstone (the same key,
a null value). With the JSON converter's ``schemas.enable=true`` (its default) key and value are
wrapped as ``{"schema": ..., "payload": ...}``; both shapes are read.

:func:`translate` maps one record, by a :class:`Mapping` of columns, to

- a :class:`Forward` upsert for ``c``, ``u`` and ``r``, keyed by the freshet document key, its
  ``version`` from the configured source (:func:`version_of`), ``event_time`` the change's time in
  the database (``source.ts_ms``);
- a :class:`Forward` delete for ``d``, at the delete's own version (an envelope source) or one
  above the ``before`` row's version column; where ``before`` lacks that column (PostgreSQL's
  default replica identity keeps only the key) the document's tombstone instead;
- :class:`Skip` for Debezium's tombstone (its delete event came first), ``t`` (a truncate names
  no rows) and ``m`` (logical messages);

or raises :class:`~freshet.errors.InvalidEventError` with reason ``debezium`` and what to fix.

Why versioned deletes and no forwarded tombstones: the bridge is at-least-once, so a range of
records may be forwarded twice. Versioned events make that harmless (the second copy is stale);
a tombstone applies whatever its version, so a repeated ``[delete, re-create]`` pair forwarded as
``[tombstone, upsert]`` would delete the re-created document for good (the upsert's second copy is
stale).

Traps: a delete names its document from ``before`` (the primary key at least) or, failing that,
the record key, so the document id should be the primary key; PostgreSQL sends unchanged TOASTed
columns of an update as a placeholder unless the table has ``REPLICA IDENTITY FULL``: such a
record is refused rather than indexed as that placeholder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from freshet.errors import InvalidEventError
from schemas.change import KEY_SEPARATOR, MAX_VERSION, ChangeEvent, MetadataValue

REASON = "debezium"
#: What Debezium sends for a value it does not have (``unavailable.value.placeholder``).
UNAVAILABLE = "__debezium_unavailable_value"
ENVELOPE_TIMES = ("ts_ms", "ts_us", "ts_ns")
_MICROS_PER = {  # semantic type of an integer column -> microseconds per unit
    "io.debezium.time.Timestamp": 1_000, "org.apache.kafka.connect.data.Timestamp": 1_000,
    "io.debezium.time.MicroTimestamp": 1, "io.debezium.time.Date": 86_400_000_000,
    "org.apache.kafka.connect.data.Date": 86_400_000_000,
}
_NANOS = "io.debezium.time.NanoTimestamp"
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True, slots=True)
class Mapping:
    """Which columns of a row make which fields of a change event (``FRESHET_DEBEZIUM_*``)."""

    doc_id: str = "id"
    content: str = "body"
    title: str = ""
    """Empty: no title column (the indexer takes the first heading)."""
    version: str = "source.lsn"
    """A column, ``source.<field>`` of the envelope, or one of ``ts_ms``, ``ts_us``, ``ts_ns``."""
    metadata: tuple[str, ...] = ()
    tenant: str = ""
    content_type: str = "text/markdown"


@dataclass(frozen=True, slots=True)
class Forward:
    """A record for the changes topic: ``event`` under its document key, or (``event`` None) the
    document's tombstone."""

    key: str
    event: ChangeEvent | None

    @property
    def value(self) -> bytes | None:
        return None if self.event is None else self.event.model_dump_json(exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class Skip:
    why: str


Translation = Forward | Skip


def translate(value: bytes | None, key: bytes | None, mapping: Mapping, *, event_id: str | None = None
              ) -> Translation:
    """The freshet change one Debezium record stands for (see the module docstring)."""
    if value is None:
        return Skip("tombstone")  # its delete event came first and did the work
    envelope, schema = _unwrap(_load(value, "value"))
    if not isinstance(envelope, dict):
        raise InvalidEventError(REASON, f"the value is a JSON {type(envelope).__name__}, not a change envelope")
    op = envelope.get("op")
    if op in ("t", "m"):
        return Skip("truncate" if op == "t" else "message")
    if op == "d":
        return _delete(envelope, key, schema, mapping, event_id)
    if op is None:
        raise InvalidEventError(REASON, "the value has no 'op': not a Debezium change envelope (an "
                                        "ExtractNewRecordState-flattened topic cannot be bridged)")
    if op not in ("c", "u", "r"):
        raise InvalidEventError(REASON, f"'op' is {op!r}: an op of a Debezium change envelope is c, u, d, r, t or m")
    after = envelope.get("after")
    if not isinstance(after, dict):
        raise InvalidEventError(REASON, f"op {op!r} without an 'after' row")
    event = _event(envelope, after, schema, mapping, event_id)
    return Forward(event.key, event)


def _delete(envelope: dict[str, Any], key: bytes | None, schema: Any, mapping: Mapping,
            event_id: str | None) -> Forward:
    """A delete event at the change's version; where that version cannot be had (a column the
    ``before`` row lacks) the document's tombstone, which applies whatever the version."""
    before = envelope.get("before")
    before = before if isinstance(before, dict) else {}
    doc_key = _document_key({**(_key_row(key) if key is not None else {}), **before}, mapping,
                            "the delete's 'before' and key")
    spec = mapping.version
    if spec.startswith("source.") or spec in ENVELOPE_TIMES:
        version = version_of(envelope, before, schema, spec)
    elif before.get(spec) not in (None, UNAVAILABLE):
        version = version_of(envelope, before, schema, spec) + 1  # the row's last version was that value
    else:
        return Forward(doc_key, None)
    tenant, _, doc_id = doc_key.rpartition(KEY_SEPARATOR)
    return Forward(doc_key, ChangeEvent(doc_id=doc_id, tenant=tenant or None, op="delete", version=version,
                                        event_id=event_id, event_time=_time(envelope)))


def _event(envelope: dict[str, Any], row: dict[str, Any], schema: Any, mapping: Mapping,
           event_id: str | None) -> ChangeEvent:
    content = _column(row, mapping.content, "FRESHET_DEBEZIUM_CONTENT")
    title = _column(row, mapping.title, "FRESHET_DEBEZIUM_TITLE") if mapping.title else None
    metadata = {c: _metadata(v) for c in mapping.metadata
                if (v := _column(row, c, "FRESHET_DEBEZIUM_METADATA")) is not None}
    fields = {
        "doc_id": _identity(row, mapping.doc_id, "FRESHET_DEBEZIUM_DOC_ID"),
        "tenant": _identity(row, mapping.tenant, "FRESHET_DEBEZIUM_TENANT") if mapping.tenant else None,
        "op": "upsert", "version": version_of(envelope, row, schema, mapping.version),
        "content": "" if content is None else _text(content),
        "title": None if title is None else _text(title), "metadata": metadata,
        "content_type": mapping.content_type, "event_id": event_id,
        "event_time": _time(envelope),
    }
    try:
        return ChangeEvent.model_validate(fields)
    except ValidationError as exc:
        raise InvalidEventError(REASON, "the row makes no valid change event: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from exc


def _time(envelope: dict[str, Any]) -> datetime | None:
    """When the row changed in the database (``source.ts_ms``), if the envelope says."""
    source = envelope.get("source")
    ts = source.get("ts_ms") if isinstance(source, dict) else None
    return datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 \
        else None


def version_of(envelope: dict[str, Any], row: dict[str, Any], schema: Any, spec: str) -> int:
    """The version of a change: a column (timestamps in microseconds since the epoch, whatever
    Debezium's encoding; other integers as they are), ``source.<field>`` or an envelope time."""
    if spec.startswith("source."):
        source = envelope.get("source")
        value, semantic = (source.get(spec[7:]) if isinstance(source, dict) else None), None
    elif spec in ENVELOPE_TIMES:
        value, semantic = envelope.get(spec), None
    else:
        value, semantic = _column(row, spec, "FRESHET_DEBEZIUM_VERSION"), _semantic(schema, spec)
    if value is None:
        raise InvalidEventError(REASON, f"the version source {spec!r} (FRESHET_DEBEZIUM_VERSION) is missing or "
                                        "null in this change; choose one every change carries")
    version = _as_int(value, semantic, spec)
    if not 0 <= version <= MAX_VERSION:
        raise InvalidEventError(REASON, f"version {version} from {spec!r} is outside 0..{MAX_VERSION}")
    return version


def _as_int(value: Any, semantic: str | None, spec: str) -> int:
    if isinstance(value, str) and not value.isdigit():
        return _micros(value, spec)
    if isinstance(value, bool) or not isinstance(value, int | float | str) or (
            isinstance(value, float) and not value.is_integer()):
        raise InvalidEventError(REASON, f"{spec!r} is {value!r}: not an integer or a timestamp")
    number = int(value)
    if semantic == _NANOS:
        return number // 1000
    return number * _MICROS_PER.get(semantic or "", 1)


def _micros(text: str, spec: str) -> int:
    """Microseconds since the epoch of an ISO 8601 / RFC 3339 string (io.debezium.time.ZonedTimestamp);
    digits past the microsecond are dropped, a time without an offset is UTC."""
    try:
        at = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()))
    except ValueError as exc:
        raise InvalidEventError(REASON, f"{spec!r} is {text[:64]!r}: not an integer or a timestamp") from exc
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _semantic(schema: Any, column: str) -> str | None:
    """The Connect schema name of ``after.<column>`` in a value schema (None without one)."""
    if not isinstance(schema, dict):
        return None
    for part in schema.get("fields") or []:
        if isinstance(part, dict) and part.get("field") == "after":
            for col in part.get("fields") or []:
                if isinstance(col, dict) and col.get("field") == column:
                    name = col.get("name")
                    return name if isinstance(name, str) else None
    return None


def _document_key(row: dict[str, Any], mapping: Mapping, where: str) -> str:
    doc_id = _identity(row, mapping.doc_id, "FRESHET_DEBEZIUM_DOC_ID", where)
    tenant = _identity(row, mapping.tenant, "FRESHET_DEBEZIUM_TENANT", where) if mapping.tenant else None
    try:  # the same identity rules as an event's
        return ChangeEvent(doc_id=doc_id, op="delete", version=0, tenant=tenant).key
    except ValidationError as exc:
        raise InvalidEventError(REASON, f"{where} names no document ({doc_id[:200]!r}): "
                                        f"{exc.errors()[0]['msg']}") from exc


def _identity(row: dict[str, Any], column: str, setting: str, where: str = "the row") -> str:
    value = _column(row, column, setting, where)
    if value is None or isinstance(value, dict | list) or value == "":
        raise InvalidEventError(REASON, f"column {column!r} ({setting}) is {value!r} in {where}: not an identity")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _column(row: dict[str, Any], column: str, setting: str, where: str = "the row") -> Any:
    if column not in row:
        raise InvalidEventError(REASON, f"mapped column {column!r} ({setting}) is missing from {where}; columns: "
                                        f"{', '.join(sorted(row))[:300] or 'none'}")
    value = row[column]
    if value == UNAVAILABLE:
        raise InvalidEventError(REASON, f"column {column!r} is Debezium's placeholder for a value it did not get "
                                        "(an unchanged TOASTed column): give the table REPLICA IDENTITY FULL")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _metadata(value: Any) -> MetadataValue:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, sort_keys=True)


def _key_row(key: bytes) -> dict[str, Any]:
    raw, _ = _unwrap(_load(key, "key"))
    if not isinstance(raw, dict):
        raise InvalidEventError(REASON, f"the key is a JSON {type(raw).__name__}, not a row's key columns")
    return raw


def _unwrap(raw: Any) -> tuple[Any, Any]:
    """(payload, schema) of the JSON converter's wrapper, or (raw, None) without one."""
    if isinstance(raw, dict) and set(raw) == {"schema", "payload"}:
        return raw["payload"], raw["schema"]
    return raw, None


def _load(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEventError(REASON, f"the {what} is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidEventError(REASON, f"the {what} is not JSON ({exc}); freshet reads Debezium's JSON converter "
                                        "output, not Avro or Protobuf") from exc
    except RecursionError as exc:
        raise InvalidEventError(REASON, f"the {what} is nested too deeply") from exc

