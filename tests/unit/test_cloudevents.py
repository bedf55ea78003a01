"""CloudEvents on the changes topic: both content modes of the Kafka binding, unwrapped by parse_change.

The vectors are the examples of the CloudEvents Kafka protocol binding (cloudevents/spec,
cloudevents/bindings/kafka-protocol-binding.md, 3.2.5 binary and 3.3.4 structured), adapted to
carry a freshet change event: their data (Avro, XML) became a JSON change event, so their
content-type / datacontenttype became application/json.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from freshet.errors import InvalidEventError
from schemas.change import parse_change

KEY = b"mykey"
EVENT = {"doc_id": "mykey", "op": "upsert", "version": 3, "content": "# Hello\n\nfrom a CloudEvent"}

#: 3.2.5: the binary-mode example's headers (its content-type was application/avro).
BINARY_HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_type", b"com.example.someevent"),
    ("ce_source", b"/mycontext/subcontext"),
    ("ce_id", b"1234-1234-1234"),
    ("ce_time", b"2018-04-05T03:56:24Z"),
    ("content-type", b"application/json"),
]

#: 3.3.4: the structured-mode example (its datacontenttype was application/xml).
STRUCTURED_HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
STRUCTURED = {
    "specversion": "1.0",
    "type": "com.example.someevent",
    "source": "/mycontext/subcontext",
    "id": "1234-1234-1234",
    "time": "2018-04-05T03:56:24Z",
    "datacontenttype": "application/json",
    "data": EVENT,
}
SPEC_TIME = datetime(2018, 4, 5, 3, 56, 24, tzinfo=UTC)


def _parse(value: Any, headers: Any) -> Any:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return parse_change(raw, KEY, max_bytes=100_000, headers=headers)


def test_binary_mode_example_maps_id_and_time() -> None:
    ev = _parse(EVENT, BINARY_HEADERS)
    assert (ev.doc_id, ev.op, ev.version, ev.content) == ("mykey", "upsert", 3, EVENT["content"])
    assert ev.event_id == "1234-1234-1234"
    assert ev.event_time == SPEC_TIME


def test_structured_mode_example_maps_id_and_time() -> None:
    ev = _parse(STRUCTURED, STRUCTURED_HEADERS)
    assert (ev.doc_id, ev.version, ev.content) == ("mykey", 3, EVENT["content"])
    assert (ev.event_id, ev.event_time) == ("1234-1234-1234", SPEC_TIME)


def test_structured_mode_with_data_base64_and_headers_as_a_mapping() -> None:
    encoded = base64.b64encode(json.dumps(EVENT).encode()).decode()
    value = {k: v for k, v in STRUCTURED.items() if k != "data"} | {"data_base64": encoded}
    ev = _parse(value, {b"Content-Type": b"application/cloudevents+json"})
    assert (ev.doc_id, ev.event_id) == ("mykey", "1234-1234-1234")


def test_the_events_own_id_and_time_win() -> None:
    own = {**EVENT, "event_id": "mine", "event_time": "2020-01-01T00:00:00Z"}
    ev = _parse({**STRUCTURED, "data": own}, STRUCTURED_HEADERS)
    assert ev.event_id == "mine" and ev.event_time == datetime(2020, 1, 1, tzinfo=UTC)
    ev = _parse(own, BINARY_HEADERS)
    assert ev.event_id == "mine"


def test_time_is_optional() -> None:
    ev = _parse(EVENT, [h for h in BINARY_HEADERS if h[0] != "ce_time"])
    assert ev.event_id == "1234-1234-1234" and ev.event_time is None


def test_without_cloudevents_headers_a_record_is_a_plain_change_event() -> None:
    ev = _parse(EVENT, [("content-type", b"application/json"), ("trace", b"x")])
    assert ev.event_id is None
    with pytest.raises(InvalidEventError) as err:  # a CloudEvent without its headers is no change event
        _parse(STRUCTURED, None)
    assert err.value.reason == "schema"


def test_a_binary_tombstone_is_still_a_tombstone() -> None:
    ev = parse_change(None, KEY, max_bytes=100, headers=BINARY_HEADERS)
    assert (ev.doc_id, ev.op) == ("mykey", "delete")


def _broken(name: str, value: bytes | None) -> list[tuple[str, bytes]]:
    kept = [h for h in BINARY_HEADERS if h[0] != name]
    return kept + ([(name, value)] if value is not None else [])


@pytest.mark.parametrize(("headers", "needle"), [
    (_broken("ce_specversion", b"0.3"), "specversion is '0.3'"),
    (_broken("ce_specversion", None), "specversion is None"),
    (_broken("ce_id", None), "ce_id is missing"),
    (_broken("ce_source", b""), "ce_source is missing or empty"),
    (_broken("ce_type", None), "ce_type"),
    (_broken("ce_time", b"yesterday"), "not an RFC 3339"),
    (_broken("content-type", b"application/avro"), "not JSON"),
    (_broken("ce_id", b"\xff\xfe"), "not UTF-8"),
])
def test_bad_binary_records_are_cloudevents_errors(headers: list[tuple[str, bytes]], needle: str) -> None:
    with pytest.raises(InvalidEventError) as err:
        _parse(EVENT, headers)
    assert err.value.reason == "cloudevents"
    assert needle in str(err.value)


@pytest.mark.parametrize(("value", "headers", "needle"), [
    ({**STRUCTURED, "specversion": "0.3"}, STRUCTURED_HEADERS, "specversion is '0.3'"),
    ({k: v for k, v in STRUCTURED.items() if k != "source"}, STRUCTURED_HEADERS, "source is missing"),
    ({k: v for k, v in STRUCTURED.items() if k != "data"}, STRUCTURED_HEADERS, "no 'data'"),
    ({**STRUCTURED, "data_base64": "e30="}, STRUCTURED_HEADERS, "never both"),
    ({**STRUCTURED, "datacontenttype": "application/xml"}, STRUCTURED_HEADERS, "not JSON"),
    ({**STRUCTURED, "data": "<xml/>"}, STRUCTURED_HEADERS, "got str"),
    ({**STRUCTURED, "data": None}, STRUCTURED_HEADERS, "got NoneType"),
    (STRUCTURED, [("content-type", b"application/cloudevents+avro")], "event format"),
    (STRUCTURED, [("content-type", b"application/cloudevents-batch+json")], "event format"),
    ([STRUCTURED], STRUCTURED_HEADERS, "must be a JSON object"),
])
def test_bad_structured_records_are_cloudevents_errors(value: Any, headers: Any, needle: str) -> None:
    with pytest.raises(InvalidEventError) as err:
        _parse(value, headers)
    assert err.value.reason == "cloudevents"
    assert needle in str(err.value)


def test_the_inner_event_is_checked_as_any_change_event() -> None:
    with pytest.raises(InvalidEventError) as err:
        _parse({**STRUCTURED, "data": {"doc_id": "a", "op": "upsert", "version": 1}}, STRUCTURED_HEADERS)
    assert err.value.reason == "missing_content"
    value = {**STRUCTURED, "data_base64": base64.b64encode(b"{not json").decode()}
    del value["data"]
    with pytest.raises(InvalidEventError) as err:
        _parse(value, STRUCTURED_HEADERS)
    assert err.value.reason == "invalid_json"
