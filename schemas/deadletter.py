"""The dead-letter contract: rejected records keep their original bytes, headers say why.

A dead-lettered record has the original key and value, the original headers, and these added:
``freshet.reason`` (a short code such as ``invalid_json``), ``freshet.error`` (the explanation),
``freshet.source.topic``, ``freshet.source.partition``, ``freshet.source.offset`` and
``freshet.worker``.
"""

from __future__ import annotations

REASON = "freshet.reason"
ERROR = "freshet.error"
SOURCE_TOPIC = "freshet.source.topic"
SOURCE_PARTITION = "freshet.source.partition"
SOURCE_OFFSET = "freshet.source.offset"
WORKER = "freshet.worker"

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
