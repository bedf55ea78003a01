"""Sending a rejected record to the dead-letter topic, with its original bytes and the reason."""

from __future__ import annotations

from typing import Any

import structlog

from schemas.deadletter import dead_letter_headers
from streams.sending import send

log = structlog.get_logger(__name__)


async def dead_letter(topic: Any, message: Any, *, reason: str, error: str, worker: str) -> None:
    """Publish ``message`` (a Faust message) to the dead-letter ``topic`` and wait for the ack."""
    headers = message.headers
    original = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    await send(topic, what="dead_letter", key=message.key, value=message.value,
               headers=dead_letter_headers(original, reason=reason, error=error, topic=message.topic,
                                           partition=message.partition, offset=message.offset, worker=worker))
