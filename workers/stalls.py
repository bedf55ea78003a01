"""Seeing a stall: a unit of work that takes too long says so, and says where it waits.

A worker that waits for ever inside one await (a future nobody resolves, a network call without a
timeout) is silent: its logs simply stop. :func:`watched` puts a watchdog beside a unit of work
(a batch, a read-back, a sweep): past ``after`` seconds, and again each ``after`` seconds, it logs
``work_slow`` with the await chain of the task doing the work, down to the call it waits in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SLOW_SECONDS = 60.0
"""When a unit of work counts as slow: above any single bounded wait of the delivery path but one
(a producer acknowledgement, bounded at about 70 s, see streams.sending.ack_timeout)."""


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` waits: ``file:line function`` of each coroutine down its await chain, outermost
    first, ending with the awaited object when that is not a coroutine (a future, a sleep)."""
    out: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(200):  # a chain is finite; the bound only guards against a cycle
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            if obj is not None:
                out.append(f"awaiting {type(obj).__name__}")
            break
        where = "/".join(frame.f_code.co_filename.split("/")[-2:])
        out.append(f"{where}:{frame.f_lineno} {frame.f_code.co_name}")
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None) or getattr(obj, "ag_await", None)
    return out


@asynccontextmanager
async def watched(what: str, *, after: float = SLOW_SECONDS, **fields: Any) -> AsyncIterator[None]:
    """Run the block under a watchdog that logs ``work_slow`` every ``after`` seconds it lasts."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def watch() -> None:
        while True:
            await asyncio.sleep(after)
            chain = await_chain(task) if task is not None else []
            log.warning("work_slow", what=what, seconds=round(loop.time() - start), waiting_in=chain[-8:], **fields)

    watchdog = asyncio.create_task(watch(), name=f"watchdog:{what}")
    try:
        yield
    finally:
        watchdog.cancel()
