"""Sending a rejected record to the dead-letter topic, with its original bytes and the reason.

A dead letter is cut to ``max_bytes`` when it is larger (:func:`schemas.deadletter.fit_dead_letter`).
Should Kafka still refuse it, a last copy with no value and only freshet's headers is sent, so the
reason and the source position of every rejected record are always on the topic.
"""

from __future__ import annotations

from typing import Any

import structlog

from schemas.deadletter import TRUNCATED, dead_letter_headers, fit_dead_letter
from streams.sending import RecordRefusedError, send

log = structlog.get_logger(__name__)

#: Below the producer's default max request size (1 MB) and the broker's message.max.bytes.
DEFAULT_MAX_BYTES = 900_000


async def dead_letter(topic: Any, message: Any, *, reason: str, error: str, worker: str,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Publish ``message`` (a Faust message) to the dead-letter ``topic`` and wait for the ack."""
    raw = message.headers
    original: list[tuple[str, bytes]] = list(raw.items()) if isinstance(raw, dict) else list(raw or [])
    original = [(k if isinstance(k, str) else bytes(k).decode("utf-8", "replace"), bytes(v or b""))
                for k, v in original]
    headers = dead_letter_headers(original, reason=reason, error=error, topic=message.topic,
                                  partition=message.partition, offset=message.offset, worker=worker)
    key, value, headers = fit_dead_letter(message.key, message.value, headers, max_bytes)
    try:
        await send(topic, what="dead_letter", key=key, value=value, headers=headers)
    except RecordRefusedError as exc:
        log.error("dead_letter_refused_sending_headers_only", reason=reason, error=str(exc),
                  partition=message.partition, offset=message.offset)
        bare = [(n, b) for n, b in headers if n.startswith("freshet.") and n != TRUNCATED]
        await send(topic, what="dead_letter", key=None, value=None,
                   headers=[*bare, (TRUNCATED, f"record refused by Kafka ({exc}); key and value dropped".encode())])
