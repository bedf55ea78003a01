"""The dead-letter contract: rejected records keep their original bytes, headers say why.

A dead-lettered record has the original key and value, the original headers, and these added:
``freshet.reason`` (a short code such as ``invalid_json``), ``freshet.error`` (the explanation),
``freshet.source.topic``, ``freshet.source.partition``, ``freshet.source.offset`` and
``freshet.worker``. A record too large to produce whole (over ``FRESHET_DEAD_LETTER_MAX_BYTES``, which
stays below the producer's and the broker's size limits) keeps the head of its value and key, and
``freshet.truncated`` says what was cut (``value 1000500 bytes, kept 899000``).

``freshet dlq replay`` publishes a dead letter's original key, value and non-``freshet.*`` headers to
the changes topic again, with two headers added: ``freshet.replay.of``, the origin
``<source topic>:<partition>:<offset>`` (the record first dead-lettered; a dead letter of a replay
carries the header on, so its origin stays the first record), and ``freshet.replay.deadletter``,
the dead letter it was made from (``<dead-letter topic>:<partition>:<offset>``). A dead letter whose
origin or position is already named on the changes topic has been replayed and is not sent again.
"""

from __future__ import annotations

REASON = "freshet.reason"
ERROR = "freshet.error"
SOURCE_TOPIC = "freshet.source.topic"
SOURCE_PARTITION = "freshet.source.partition"
SOURCE_OFFSET = "freshet.source.offset"
WORKER = "freshet.worker"
TRUNCATED = "freshet.truncated"
REPLAY_OF = "freshet.replay.of"
REPLAY_DEAD_LETTER = "freshet.replay.deadletter"

_MAX_ERROR_BYTES = 4000


def dead_letter_headers(
    original: list[tuple[str, bytes]] | None,
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    worker: str,
) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered record: the original ones plus the freshet ones."""
    added = {
        REASON: reason,
        ERROR: error[:_MAX_ERROR_BYTES],
        SOURCE_TOPIC: topic,
        SOURCE_PARTITION: str(partition),
        SOURCE_OFFSET: str(offset),
        WORKER: worker,
    }
    kept = [(k, v) for k, v in (original or []) if k not in added]
    return kept + [(k, v.encode("utf-8")) for k, v in added.items()]


Headers = list[tuple[str, bytes]]


def fit_dead_letter(key: bytes | None, value: bytes | None, headers: Headers,
                    max_bytes: int) -> tuple[bytes | None, bytes | None, Headers]:
    """Cut a dead letter to at most ``max_bytes`` (key + value + headers), value first, then key,
    then the original headers; the ``freshet.*`` headers always stay, and ``freshet.truncated``
    is added when anything was cut."""

    def size(k: bytes | None, v: bytes | None, hs: Headers) -> int:
        return len(k or b"") + len(v or b"") + sum(len(n) + len(b) for n, b in hs)

    if size(key, value, headers) <= max_bytes:
        return key, value, headers
    ours = [(n, b) for n, b in headers if n.startswith("freshet.")]
    theirs = [(n, b) for n, b in headers if not n.startswith("freshet.")]
    cut: list[str] = []
    note = len(TRUNCATED) + 120  # room for the note itself
    room = max_bytes - note - size(None, None, ours)
    if size(key, None, theirs) > room // 2:  # huge key or headers: keep a little of each
        if key is not None and len(key) > 256:
            cut.append(f"key {len(key)} bytes, kept 256")
            key = key[:256]
        if size(None, None, theirs) > room // 4:
            cut.append(f"{len(theirs)} original headers dropped")
            theirs = []
    keep = max(0, room - size(key, None, theirs))
    if value is not None and len(value) > keep:
        cut.insert(0, f"value {len(value)} bytes, kept {keep}")
        value = value[:keep]
    return key, value, [*theirs, *ours, (TRUNCATED, "; ".join(cut).encode())]
