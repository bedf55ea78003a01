"""The query agent: requests topic -> search -> reply topic, many requests at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import structlog

from freshet.errors import FreshetError, InvalidEventError
from freshet.settings import Settings
from schemas.search import (
    CORRELATION_HEADER,
    REPLY_TOPIC_HEADER,
    REQUEST_ID_HEADER,
    SearchReply,
    parse_request,
    request_id_of,
)
from streams.app import Topics
from streams.deadletter import dead_letter
from streams.web import Health
from workers.retry import until_done
from workers.search import Searcher, error_reply, failure_reply

log = structlog.get_logger(__name__)


def _headers(message: Any) -> dict[str, bytes]:
    h = message.headers
    return dict(h.items()) if isinstance(h, dict) else dict(h or [])


def register(app: faust.App, topics: Topics, settings: Settings, searcher: Searcher, health: Health) -> None:
    """Attach the query agent to ``app``; ``query_concurrency`` requests run at once."""
    started = asyncio.Lock()
    ready: list[bool] = []

    async def ensure_started() -> None:
        async with started:
            if not ready:
                await until_done(searcher.start, what="query_start")
                ready.append(True)
                health.ready = True

    @app.agent(topics.requests, name="freshet.answer_searches", concurrency=settings.query_concurrency)
    async def answer(stream: Any) -> None:
        await ensure_started()
        async for event in stream.events():
            await _handle(event.message)

    async def _handle(message: Any) -> None:
        received = time.monotonic()
        headers = _headers(message)
        header_rid = headers.get(CORRELATION_HEADER) or headers.get(REQUEST_ID_HEADER)
        header_reply = headers.get(REPLY_TOPIC_HEADER)
        try:
            req = parse_request(message.value)
        except InvalidEventError as exc:
            rid = request_id_of(message.value) or (header_rid.decode("utf-8", "replace") if header_rid else None)
            if rid is None:
                log.warning("request_dead_lettered", reason=exc.reason, error=str(exc))
                await dead_letter(topics.dead_letter, message, reason=exc.reason, error=str(exc), worker="query")
            else:
                target = header_reply.decode() if header_reply else settings.topic_replies
                await _reply(target, error_reply(rid, exc.reason, str(exc)), header_rid)
            return
        target = req.reply_to or (header_reply.decode() if header_reply else settings.topic_replies)
        timeout = req.deadline_ms / 1000 if req.deadline_ms else None
        try:
            reply = await asyncio.wait_for(searcher.search(req), timeout)
        except TimeoutError:
            reply = SearchReply(request_id=req.request_id, status="timeout")
        except FreshetError as exc:
            reply = failure_reply(req, exc)
        await _reply(target, reply, header_rid)
        log.debug("request_answered", request_id=req.request_id, status=reply.status,
                  hits=len(reply.hits), ms=round((time.monotonic() - received) * 1e3, 1))

    async def _reply(topic_name: str, reply: SearchReply, correlation: bytes | None) -> None:
        rid = reply.request_id.encode()
        fut = await topics.named(topic_name).send(
            key=rid, value=reply.model_dump_json().encode(),
            headers=[(CORRELATION_HEADER, correlation or rid), (REQUEST_ID_HEADER, rid)],
        )
        await fut
