"""The document change event: what producers publish on the changes topic.

The Kafka key is the document identity: ``doc_id`` alone, or with a tenant ``tenant``, the ASCII
unit separator (``\x1f``) and ``doc_id`` (doc ids may contain ``/``, so no printable separator
is unambiguous). Per-document order then holds within a partition. A record with a null value (a
tombstone) deletes the document named by its key.

Identities never contain control characters (C0, DEL, C1; the separator is one of them), so one
key names exactly one (tenant, doc_id): without that rule the tenant-less ``acme\x1fsecret.md``
would share the key, state and chunks of tenant ``acme``'s ``secret.md``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from freshet.errors import InvalidEventError
from schemas import cloudevents

#: Major version of this contract; events may carry ``schema_version`` "1" or "1.x", or omit it.
SCHEMA_MAJOR = 1

MetadataValue = str | int | float | bool | list[str]

#: No control characters (C0, DEL, C1) in an identity: the key separator is one of them.
IDENTITY_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
#: Versions are stored as 64-bit integers (Weaviate ``int``).
MAX_VERSION = 2**63 - 1


class ChangeEvent(BaseModel):
    """One change to one document."""

    model_config = ConfigDict(
        extra="forbid", frozen=True,
        json_schema_extra={"if": {"properties": {"op": {"const": "upsert"}}}, "then": {"required": ["content"]}},
    )

    doc_id: str = Field(min_length=1, max_length=512, pattern=IDENTITY_PATTERN,
                        description="Document identity within its tenant; no control characters.")
    op: Literal["upsert", "delete"] = Field(description="Replace the document's content, or remove it.")
    version: int = Field(ge=0, le=MAX_VERSION,
                         description="Increases per document; a version not above the applied one is stale.")
    content: str | None = Field(None, description="Full text of this version; required for upsert.")
    title: str | None = Field(None, description="Display title; defaults to the first heading.")
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Flat key/value metadata, usable as search filters."
    )
    tenant: str | None = Field(None, min_length=1, max_length=128, pattern=IDENTITY_PATTERN,
                               description="Optional tenant; part of the identity; no control characters.")
    content_type: Literal["text/markdown", "text/plain"] = Field(
        "text/markdown", description="How the content is structured for chunking."
    )
    event_id: str | None = Field(None, description="Producer's id for this event (for tracing).")
    event_time: datetime | None = Field(
        None, description="RFC 3339 time of the change; defaults to the Kafka record timestamp."
    )
    schema_version: str | None = Field(
        None, description="Contract version, e.g. '1'; absent means the current version."
    )

    @model_validator(mode="after")
    def _check(self) -> ChangeEvent:
        if self.op == "upsert" and self.content is None:
            raise ValueError("an upsert needs 'content' (the full text of the new version)")
        return self

    @property
    def key(self) -> str:
        """The Kafka key of this event: the document identity."""
        return document_key(self.tenant, self.doc_id)


KEY_SEPARATOR = "\x1f"


def document_key(tenant: str | None, doc_id: str) -> str:
    """Kafka key for a document: ``tenant\x1fdoc_id``, or ``doc_id`` alone without a tenant."""
    return f"{tenant}{KEY_SEPARATOR}{doc_id}" if tenant else doc_id


def split_key(key: str) -> tuple[str | None, str]:
    """(tenant, doc_id) of a document key (identities hold no separator, so this is exact)."""
    tenant, _, doc_id = key.rpartition(KEY_SEPARATOR)
    return tenant or None, doc_id


def parse_change(value: bytes | None, key: bytes | None, *, max_bytes: int,
                 headers: cloudevents.Headers = None) -> ChangeEvent:
    """Decode one record of the changes topic, or raise :class:`InvalidEventError` with a reason.

    A null value is a tombstone: it deletes the document named by the key (version 0 is never
    stale against an applied version, so the indexer treats tombstones specially). With the
    record's ``headers``, a CloudEvent in either content mode of the Kafka binding is unwrapped
    first (:mod:`schemas.cloudevents`).
    """
    if value is None:
        if not key:
            raise InvalidEventError("tombstone_without_key", "a tombstone (null value) needs a key naming the document")
        return _tombstone(_decode(key, "key"))
    if len(value) > max_bytes:
        raise InvalidEventError(
            "oversized", f"event is {len(value)} bytes, above the cap of {max_bytes} (FRESHET_MAX_DOCUMENT_BYTES)"
        )
    named = cloudevents.header_dict(headers)
    mode = cloudevents.content_mode(named)
    defaults: dict[str, str] = {}
    if mode == "binary":
        defaults = cloudevents.binary_attributes(named).defaults()
    raw = _load(value, "value")
    if mode == "structured":
        data, attrs = cloudevents.structured(raw, named)
        raw, defaults = (_load(data, "CloudEvent data") if isinstance(data, bytes) else data), attrs.defaults()
    if not isinstance(raw, dict):
        reason = "cloudevents" if mode else "schema"
        raise InvalidEventError(reason, f"value must be a JSON object (a change event), got {type(raw).__name__}")
    raw = {**defaults, **{k: v for k, v in raw.items() if not (k in defaults and v is None)}}
    _check_schema_version(raw.get("schema_version"))
    try:
        return ChangeEvent.model_validate(raw)
    except ValidationError as exc:
        reason = "missing_content" if "needs 'content'" in str(exc) else "schema"
        raise InvalidEventError(reason, _explain(exc)) from exc


def _load(data: bytes, what: str) -> Any:
    """JSON of UTF-8 ``data``, or :class:`InvalidEventError` (``invalid_utf8``, ``invalid_json``)."""
    text = _decode(data, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEventError("invalid_json", f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEventError("invalid_json", f"{what} is nested too deeply to be a change event") from exc


def _tombstone(key: str) -> ChangeEvent:
    """The delete a tombstone with this key means; the key must be a document's canonical key."""
    tenant, _, doc_id = key.rpartition(KEY_SEPARATOR)
    try:
        event = ChangeEvent(doc_id=doc_id, op="delete", version=0, tenant=tenant or None)
    except ValidationError as exc:
        raise InvalidEventError("schema", f"tombstone key {key[:200]!r} names no document: {_explain(exc)}") from exc
    if event.key != key:
        raise InvalidEventError("schema", f"tombstone key {key[:200]!r} is not a document key; a key is 'doc_id' "
                                          "or 'tenant<0x1f>doc_id'")
    return event


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError("invalid_utf8", f"record {what} is not valid UTF-8: {exc}") from exc


def _check_schema_version(version: object) -> None:
    if version is None:
        return
    major = str(version).split(".", 1)[0]
    if major != str(SCHEMA_MAJOR):
        raise InvalidEventError(
            "unknown_schema_version",
            f"schema_version {version!r} has major version {major!r}; this indexer reads {SCHEMA_MAJOR}.x",
        )


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
