"""CloudEvents 1.0 around a change event, as the Kafka protocol binding carries them.

A producer that speaks CloudEvents may publish its change events on the changes topic in either
content mode of the binding (cloudevents/spec, ``bindings/kafka-protocol-binding.md``):

- **structured**: header ``content-type: application/cloudevents+json`` (any parameters, matched
  case-insensitively); the value is a CloudEvents JSON object whose ``data`` is the change event
  (or whose ``data_base64`` holds its UTF-8 JSON bytes);
- **binary**: the attributes are ``ce_*`` headers (``ce_specversion``, ``ce_id``, ``ce_source``,
  ``ce_type``, optionally ``ce_time``), ``content-type`` is the data's media type (a JSON one, or
  absent), and the value is the change event itself. A record with any ``ce_`` header is read in
  binary mode; a null value is a tombstone in either case (the binding says so for binary mode).

``id`` becomes the event's ``event_id`` and ``time`` its ``event_time`` where the change event
has none of its own. Anything that breaks the binding (another specversion, a missing or empty
required attribute, another event format, data that is not a JSON object) raises
:class:`~freshet.errors.InvalidEventError` with reason ``cloudevents``. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from freshet.errors import InvalidEventError

REASON = "cloudevents"
SPECVERSION = "1.0"
STRUCTURED_MEDIA_TYPE = "application/cloudevents"
JSON_FORMAT = "application/cloudevents+json"
REQUIRED = ("specversion", "id", "source", "type")
HEADER_PREFIX = "ce_"

#: Record headers as the Kafka clients give them: a list of (name, value) pairs, or a mapping.
Headers = Iterable[tuple[str | bytes, bytes | None]] | Mapping[str | bytes, bytes | None] | None
Mode = Literal["structured", "binary"]


@dataclass(frozen=True, slots=True)
class Attributes:
    """The context attributes freshet uses; the others are accepted and ignored."""

    id: str
    source: str
    type: str
    time: str | None = None

    def defaults(self) -> dict[str, str]:
        """The change-event fields these attributes fill when the event lacks them."""
        return {"event_id": self.id, **({"event_time": self.time} if self.time else {})}


def header_dict(headers: Headers) -> dict[str, bytes]:
    """Headers by name (str); of repeated names the last wins, as Kafka's ``lastHeader``."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out: dict[str, bytes] = {}
    for name, value in pairs:
        key = name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")
        out[key] = bytes(value or b"")
    return out


def content_mode(headers: dict[str, bytes]) -> Mode | None:
    """Which content mode a record with these headers uses; None: not a CloudEvent."""
    if _media_type(headers).startswith(STRUCTURED_MEDIA_TYPE):
        return "structured"
    if any(name.lower().startswith(HEADER_PREFIX) for name in headers):
        return "binary"
    return None


def binary_attributes(headers: dict[str, bytes]) -> Attributes:
    """The attributes of a binary-mode record (its ``ce_*`` headers), checked."""
    attrs: dict[str, Any] = {}
    for name, raw in headers.items():
        if name.lower().startswith(HEADER_PREFIX):
            try:
                attrs[name[len(HEADER_PREFIX):].lower()] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidEventError(REASON, f"header {name!r} is not UTF-8 (the binding says so): {exc}") from exc
    media = _media_type(headers)
    if media and not _is_json(media):
        raise InvalidEventError(REASON, f"binary-mode content-type {media!r} is not JSON; freshet reads a change "
                                        "event as application/json")
    return _checked(attrs, "header ce_")


def structured(raw: Any, headers: dict[str, bytes]) -> tuple[Any, Attributes]:
    """(data, attributes) of a structured-mode value already parsed as JSON. ``data`` is a JSON
    value (``data``) or bytes (decoded ``data_base64``): the caller parses it as a change event."""
    media = _media_type(headers)
    if media.split(";")[0].strip() != JSON_FORMAT:
        raise InvalidEventError(REASON, f"content-type {media!r} names an event format freshet does not read; use "
                                        f"{JSON_FORMAT!r} (or binary mode)")
    if not isinstance(raw, dict):
        raise InvalidEventError(REASON, f"a structured CloudEvent must be a JSON object, got {type(raw).__name__}")
    attrs = _checked(raw, "")
    kind = raw.get("datacontenttype")
    if kind is not None and not (isinstance(kind, str) and _is_json(kind)):
        raise InvalidEventError(REASON, f"datacontenttype {kind!r} is not JSON; the data must be a change event")
    if "data" in raw and "data_base64" in raw:
        raise InvalidEventError(REASON, "a CloudEvent has 'data' or 'data_base64', never both")
    if "data_base64" in raw:
        encoded = raw["data_base64"]
        if not isinstance(encoded, str):
            raise InvalidEventError(REASON, "'data_base64' must be a base64 string")
        try:
            return base64.b64decode(encoded, validate=True), attrs
        except (binascii.Error, ValueError) as exc:
            raise InvalidEventError(REASON, f"'data_base64' is not base64: {exc}") from exc
    if "data" not in raw:
        raise InvalidEventError(REASON, "the CloudEvent has no 'data': it must carry a change event")
    return raw["data"], attrs


def _checked(attrs: Mapping[str, Any], where: str) -> Attributes:
    """Attributes with specversion 1.0 and every required one a non-empty string; time RFC 3339."""
    version = attrs.get("specversion")
    if version != SPECVERSION:
        raise InvalidEventError(REASON, f"{where}specversion is {version!r}; freshet reads CloudEvents "
                                        f"{SPECVERSION!r}")
    for name in REQUIRED:
        value = attrs.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidEventError(REASON, f"required CloudEvents attribute {where}{name} is missing or empty")
    time = attrs.get("time")
    if time is not None:
        if not isinstance(time, str):
            raise InvalidEventError(REASON, f"{where}time must be an RFC 3339 string, got {time!r}")
        try:
            datetime.fromisoformat(time)
        except ValueError as exc:
            raise InvalidEventError(REASON, f"{where}time {time[:64]!r} is not an RFC 3339 timestamp") from exc
    return Attributes(attrs["id"], attrs["source"], attrs["type"], time)


def _media_type(headers: dict[str, bytes]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.decode("utf-8", "replace").strip().lower()
    return ""


def _is_json(media: str) -> bool:
    """``application/json``, ``text/json`` or any ``+json`` type, parameters aside."""
    base = media.split(";")[0].strip().lower()
    return base in ("application/json", "text/json") or base.endswith("+json")
