"""Waiting out transient faults: retry with capped exponential backoff, never give up silently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from freshet.errors import TransientError

log = structlog.get_logger(__name__)
T = TypeVar("T")


def backoff_delays(first: float = 0.5, cap: float = 30.0) -> Callable[[int], float]:
    """Delay before retry ``n`` (1-based): first, 2*first, ... capped at ``cap`` seconds."""
    return lambda n: min(cap, first * 2 ** (n - 1))


async def until_done(fn: Callable[..., Awaitable[T]], *args: Any, what: str, cap: float = 30.0) -> T:
    """Run ``fn(*args)`` until it succeeds, sleeping with backoff after each :class:`TransientError`.

    Other errors propagate: they are bugs or bad input, and retrying would block the partition.
    """
    delay = backoff_delays(cap=cap)
    attempt = 0
    while True:
        try:
            return await fn(*args)
        except TransientError as exc:
            attempt += 1
            wait = delay(attempt)
            log.warning("transient_fault_retrying", what=what, attempt=attempt, retry_in=wait, error=str(exc))
            await asyncio.sleep(wait)


def within(fn: Callable[[], T], *, timeout: float, what: str, cap: float = 5.0) -> T:
    """Run ``fn()`` until it succeeds, sleeping with backoff after each :class:`TransientError`, for
    at most ``timeout`` seconds; the last fault is raised once the next wait would pass it (for
    start-up steps, which must end; :func:`until_done` never gives up)."""
    deadline = time.monotonic() + timeout
    delay = backoff_delays(cap=cap)
    attempt = 0
    while True:
        try:
            return fn()
        except TransientError as exc:
            attempt += 1
            if time.monotonic() + delay(attempt) > deadline:
                raise
            log.warning("transient_fault_retrying", what=what, attempt=attempt, retry_in=delay(attempt), error=str(exc))
            time.sleep(delay(attempt))
