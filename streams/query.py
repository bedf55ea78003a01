"""The query agent: requests topic -> search -> reply topic, many requests at once; and the same
search over HTTP (``POST /v1/search``, :mod:`schemas.openapi`).

A task follows the applied topic from its beginning into the :class:`AppliedView`; the worker is
ready (``/healthz``) once that view has caught up, so its first replies are already consistent.
Deadlines count from the request record's Kafka timestamp: a request read after its deadline is
dropped (and counted), one that runs out while waiting or searching is answered ``timeout``. The
producer sets that timestamp, so the time a request may take is also capped on this worker's clock
(:func:`~workers.replies.seconds_allowed`). Replies go only where :class:`~workers.replies.ReplyPolicy`
allows; a request naming another topic is answered ``reply_topic_refused`` on the default reply
topic. No exception leaves the agent: a request whose handling fails ends as a ``processing_error``
reply or dead letter, and the agent reads on.

Both doors share one path: :func:`admit` (decode and validate), ``_answer`` (fence wait and search
within the time allowed) and ``_count`` (stats and metrics). Over HTTP the deadline counts from
when the worker received the request (there is no Kafka timestamp), under the same cap; the reply
is the response, so ``reply_to`` is ignored, and the status says its kind (:func:`schemas.openapi.http_status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import structlog

from freshet.client import SearchClient
from freshet.errors import FreshetError, InvalidEventError
from freshet.settings import Settings
from schemas.applied import parse_applied
from schemas.generations import ACTIVE_KEY, GenerationRecord, parse_generation
from schemas.openapi import OPENAPI_PATH, SEARCH_PATH, http_status, openapi_document
from schemas.search import (
    CORRELATION_HEADER,
    REPLY_TOPIC_HEADER,
    REQUEST_ID_HEADER,
    ReplyError,
    SearchReply,
    SearchRequest,
    header_text,
    parse_request,
    request_id_of,
)
from streams.app import Topics
from streams.deadletter import dead_letter
from streams.web import Health
from workers import metrics
from workers.applied_view import AppliedView
from workers.beir import Dataset, load_dataset
from workers.embedding import BatchingEmbedder, Embedder, SentenceTransformerEmbedder, embed_off_loop, model_identity
from workers.log_reader import LogRecord, follow_topic
from workers.probes import Probes, golden_figures
from workers.replies import PROCESSING_ERROR, REPLY_TOPIC_REFUSED, ReplyPolicy, addressed_error, seconds_allowed
from workers.retry import until_done
from workers.search import Searcher, Serving, error_reply, failure_reply
from workers.weaviate_store import store_for

log = structlog.get_logger(__name__)


def _headers(message: Any) -> dict[str, bytes]:
    h = message.headers
    return dict(h.items()) if isinstance(h, dict) else dict(h or [])


def _header_rid(headers: dict[str, bytes]) -> bytes | None:
    return headers.get(CORRELATION_HEADER) or headers.get(REQUEST_ID_HEADER)


def admit(value: bytes | None, searcher: Searcher) -> SearchRequest:
    """Decode and validate one request body, or raise :class:`InvalidEventError` (code and message of
    the error reply): the same on both doors."""
    req = parse_request(value)
    searcher.validate(req)
    return req


def register(app: faust.App, topics: Topics, settings: Settings, searcher: Searcher, probes: Probes,
             health: Health) -> None:
    """Attach the query agent, the HTTP search pages, the applied-view feed and the quality probes to ``app``."""
    started = asyncio.Lock()
    ready: list[bool] = []
    caught_up = asyncio.Event()
    stats = searcher.stats
    policy = ReplyPolicy.of(settings)

    def feeder(view: AppliedView, generation: str | None) -> Callable[[list[LogRecord]], None]:
        """What feeds ``view`` from the applied topic: the records of its generation only."""

        def on_applied(records: list[LogRecord]) -> None:
            for r in records:
                if r.value is None:
                    continue
                try:
                    record = parse_applied(r.value)
                except ValueError as exc:  # a record of another producer: skip it, loudly
                    log.warning("applied_record_unreadable", partition=r.partition, offset=r.offset,
                                error=str(exc)[:300])
                    continue
                if record.generation == generation:
                    view.apply(record)
            view.notify()
            if view is searcher.view:
                metrics.INDEX_DOCUMENTS.set(len(view))
                metrics.INDEX_CHUNKS.set(view.chunks)

        return on_applied

    async def feed(view: AppliedView, generation: str | None, caught: asyncio.Event, stop: asyncio.Event) -> None:
        """Follow the applied topic into ``view`` until ``stop`` is set (its generation is no longer served)."""
        while not stop.is_set():
            follower = asyncio.ensure_future(follow_topic(settings.kafka_access, settings.topic_applied,
                                                          feeder(view, generation), caught))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({follower, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                follower.cancel()
                with contextlib.suppress(BaseException):
                    await follower
                return
            stopping.cancel()
            exc = follower.exception()  # the feed must outlive a broker hiccup
            log.warning("applied_feed_retrying", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(2)

    stops = {searcher.generation: asyncio.Event()}  # generation -> what stops its feed
    serving = {"generation": searcher.generation or "first", "collection": settings.collection}
    metrics.SERVING_GENERATION.labels(**serving).set(1)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_applied() -> None:
        await feed(searcher.view, searcher.generation, caught_up, stops[searcher.generation])

    @app.task  # type: ignore[untyped-decorator]
    async def follow_generations() -> None:
        """Serve the active generation: on a new ``active`` record on the generations topic, start its
        store, model and applied view beside the current ones, and switch once the view is caught up."""
        latest: asyncio.Queue[GenerationRecord] = asyncio.Queue()

        def on_records(records: list[LogRecord]) -> None:
            for r in records:
                if r.key == ACTIVE_KEY and r.value is not None:
                    try:
                        latest.put_nowait(parse_generation(r.value))
                    except ValueError as exc:
                        log.warning("generation_record_unreadable", offset=r.offset, error=str(exc)[:300])

        async def follow() -> None:
            while True:
                try:
                    await follow_topic(settings.kafka_access, settings.topic_generations, on_records, asyncio.Event())
                except Exception as exc:  # noqa: BLE001 - retried: a switch may come later
                    log.warning("generations_feed_retrying", error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(2)

        following = asyncio.ensure_future(follow())
        try:
            pending: GenerationRecord | None = None  # a switch that failed, retried unless a newer one came
            while True:
                record = pending if pending is not None and latest.empty() else await latest.get()
                while not latest.empty():  # only the newest counts
                    record = latest.get_nowait()
                pending = None
                if record.generation == searcher.generation:
                    continue
                try:
                    await switch_to(record)
                except Exception as exc:  # noqa: BLE001 - the current generation keeps answering meanwhile
                    log.warning("generation_switch_retrying", generation=record.generation,
                                error=f"{type(exc).__name__}: {exc}")
                    pending = record
                    await asyncio.sleep(5)
        finally:
            following.cancel()

    async def switch_to(record: GenerationRecord) -> None:
        started_at = time.monotonic()
        target = settings.model_copy(update=record.overrides(role="query"))
        current = searcher.serving
        same_model = current.embedder.model_id == model_identity(target.model, target.model_backend)
        embedder: Embedder = current.embedder if same_model else SentenceTransformerEmbedder.for_settings(target)
        store = store_for(target)
        await until_done(store.start, what="generation_store_start")
        await embed_off_loop(embedder, ["warm-up"])
        view, caught, stop = AppliedView(), asyncio.Event(), asyncio.Event()
        asyncio.ensure_future(feed(view, record.generation, caught, stop))
        await caught.wait()
        view.track_recent = True
        old = searcher.switch(Serving(record.generation, embedder, store, view,
                                      current.batcher if same_model else BatchingEmbedder(embedder)))
        stops.pop(old.generation, asyncio.Event()).set()
        stops[record.generation] = stop
        metrics.SERVING_GENERATION.remove(serving["generation"], serving["collection"])
        serving.update(generation=record.generation, collection=record.collection)
        metrics.SERVING_GENERATION.labels(**serving).set(1)
        metrics.GENERATION_SWITCHES.inc()
        log.info("generation_switched", previous=old.generation, generation=record.generation,
                 collection=record.collection, documents=len(view), seconds=round(time.monotonic() - started_at, 1))

        async def close_later() -> None:  # searches in flight finish on the old store
            await asyncio.sleep(settings.query_max_wait_ms / 1000 + 5)
            await old.store.close()

        asyncio.ensure_future(close_later())

    @app.timer(interval=settings.probe_interval_seconds)  # type: ignore[untyped-decorator]
    async def probe_searchability() -> None:
        if health.ready:
            try:
                await probes.searchability()
            except Exception as exc:  # noqa: BLE001 - a probe never takes the worker down
                log.warning("probe_failed", probe="searchability", error=f"{type(exc).__name__}: {exc}")

    golden: list[tuple[SearchClient, Dataset]] = []

    @app.timer(interval=settings.quality_interval_seconds)  # type: ignore[untyped-decorator]
    async def probe_quality() -> None:
        if not health.ready:
            return
        try:
            recall = await probes.ann_recall()
            figures = await _golden() if settings.golden_dir else {}
        except Exception as exc:  # noqa: BLE001 - a probe never takes the worker down
            log.warning("probe_failed", probe="quality", error=f"{type(exc).__name__}: {exc}")
            return
        for mode, values in figures.items():
            metrics.GOLDEN_NDCG.labels(mode).set(values["ndcg@10"])
            metrics.GOLDEN_RECALL.labels(mode).set(values["recall@10"])
        if figures:
            searcher.probes = searcher.probes.model_copy(update={
                "golden_ndcg_at_10": {m: round(v["ndcg@10"], 4) for m, v in figures.items()},
                "golden_recall_at_10": {m: round(v["recall@10"], 4) for m, v in figures.items()},
                "golden_measured_at": datetime.now(UTC)})
        log.info("quality_probed", ann_recall_at_10=recall, golden=searcher.probes.golden_ndcg_at_10,
                 documents=len(searcher.view), chunks=searcher.view.chunks,
                 searchability_share=searcher.probes.searchability_share)

    async def _golden() -> dict[str, dict[str, float]]:
        if not golden:
            dataset = load_dataset(Path(settings.golden_dir))
            golden.append((SearchClient(settings.kafka_access, request_topic=settings.topic_requests,
                                        reply_topic=settings.topic_replies), dataset))
        client, dataset = golden[0]
        modes = [m.strip() for m in settings.golden_modes.split(",") if m.strip()]
        return await asyncio.get_running_loop().run_in_executor(None, golden_figures, client, dataset, modes)

    async def ensure_started() -> None:
        async with started:
            if not ready:
                await until_done(searcher.start, what="query_start")
                await caught_up.wait()
                searcher.view.track_recent = True
                ready.append(True)
                health.ready = True
                log.info("query_ready", applied_documents=len(searcher.view), applied_records=searcher.view.records)

    http_slots = asyncio.Semaphore(settings.query_concurrency)

    async def search_http(body: bytes) -> tuple[int, SearchReply]:
        """``POST /v1/search``: the HTTP status and the reply. A 400's request id is the body's, else empty."""
        received, now = time.monotonic(), time.time()
        stats.requests += 1
        if not health.ready:  # its view has not caught up: an answer now could read back in time
            stats.errors += 1
            return 503, error_reply(request_id_of(body) or "", "unavailable",
                                    "the query worker is not ready yet (its applied view is catching up); retry later")
        try:
            req = admit(body, searcher)
        except InvalidEventError as exc:  # 400, or 403 for a tenant this worker does not serve
            _count_invalid()
            refused = error_reply(request_id_of(body) or "", exc.reason, str(exc))
            return http_status(refused), refused
        until = received + _allowed(req, None, now)
        try:  # at most FRESHET_QUERY_CONCURRENCY searches at once over HTTP too; a slot is waited for
            await asyncio.wait_for(http_slots.acquire(), max(until - time.monotonic(), 0.001))
        except TimeoutError:
            stats.timeouts += 1
            reply = SearchReply(request_id=req.request_id, status="timeout", error=ReplyError(
                code="deadline_exceeded", message="deadline passed while waiting for a free search slot"))
        else:
            try:
                reply = await _answer(req, until)
            finally:
                http_slots.release()
        _count(req, reply, received)
        return http_status(reply), reply

    @app.page(SEARCH_PATH)
    class SearchPage(faust.web.View):
        async def post(self, request: Any) -> Any:
            try:
                status, reply = await search_http(await self.read_request_content(request))
            except Exception as exc:  # noqa: BLE001 - answered, logged; never a bare 500 from aiohttp
                stats.errors += 1
                log.exception("http_request_failed")
                status, reply = 500, error_reply("", PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
            return self.bytes(reply.model_dump_json().encode(), content_type="application/json", status=status)

    @app.page(OPENAPI_PATH)
    async def openapi(web: Any, request: Any) -> Any:
        return web.json(openapi_document())

    @app.agent(topics.requests, name="freshet.answer_searches", concurrency=settings.query_concurrency)
    async def answer(stream: Any) -> None:
        try:
            await ensure_started()
            async for event in stream.events():
                await _handle(event.message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in this wiring, not a request's fault: fail /healthz loudly
            health.fail(f"query agent died: {type(exc).__name__}: {exc}")
            log.critical("query_agent_died", error=f"{type(exc).__name__}: {exc}")
            raise

    async def _handle(message: Any) -> None:
        """Answer one request. Nothing escapes: an exception would stop the agent, and with it
        every later request; it ends as an error reply, else as a dead letter."""
        received, now = time.monotonic(), time.time()
        stats.requests += 1
        try:
            await _serve(message, received, now)
        except Exception as exc:  # noqa: BLE001 - one request's failure must not stop the agent
            await _salvage(message, exc)

    async def _serve(message: Any, received: float, now: float) -> None:
        try:
            req = admit(message.value, searcher)
        except InvalidEventError as exc:
            await _refuse(message, exc)
            return
        headers = _headers(message)
        header_rid = _header_rid(headers)
        route = policy.route(req.reply_to or header_text(headers.get(REPLY_TOPIC_HEADER)))
        if route.refusal is not None:
            stats.errors += 1
            metrics.REQUESTS.labels(req.mode, "error").inc()
            log.warning("reply_topic_refused", request_id=req.request_id, error=route.refusal)
            await _reply(route.topic, error_reply(req.request_id, REPLY_TOPIC_REFUSED, route.refusal), header_rid)
            return
        allowed = _allowed(req, message.timestamp, now)
        if req.deadline_ms is not None and allowed <= 0:
            stats.expired_dropped += 1
            metrics.EXPIRED_DROPPED.inc()
            log.info("request_expired_dropped", request_id=req.request_id, late_ms=round(-allowed * 1e3))
            return
        # every wait from here on is bounded on this worker's monotonic clock, from receipt
        reply = await _answer(req, received + allowed)
        await _reply(route.topic, reply, header_rid)
        _count(req, reply, received)

    def _allowed(req: SearchRequest, sent_at: float | None, now: float) -> float:
        return seconds_allowed(req.deadline_ms, sent_at, now, default_deadline_ms=settings.query_deadline_ms,
                               max_wait_ms=settings.query_max_wait_ms)

    def _count(req: SearchRequest, reply: SearchReply, received: float) -> None:
        metrics.REQUESTS.labels(req.mode, reply.status).inc()
        metrics.REQUEST_SECONDS.labels(req.mode).observe(took := time.monotonic() - received)
        metrics.RECENT_REQUEST_SECONDS.add(took)
        if reply.status == "ok" and not reply.hits:
            metrics.ZERO_HITS.labels(req.mode).inc()

    def _count_invalid() -> None:
        stats.errors += 1
        metrics.REQUESTS.labels("invalid", "error").inc()

    async def _answer(req: SearchRequest, until: float) -> SearchReply:
        """Search within the time allowed; ``until`` is an instant on the monotonic clock."""
        left = max(until - time.monotonic(), 0.001)
        try:
            reply = await asyncio.wait_for(searcher.search(req), left)
        except TimeoutError:
            stats.timeouts += 1
            waiting = req.consistency is not None and not searcher.view.satisfied(req.consistency)
            what = "waiting for the consistency fence" if waiting else "searching"
            return SearchReply(request_id=req.request_id, status="timeout", error=ReplyError(
                code="deadline_exceeded", message=f"deadline passed while {what} (left: {left * 1e3:.0f} ms)"))
        except FreshetError as exc:
            stats.errors += 1
            log.warning("search_failed", request_id=req.request_id, error=str(exc))
            return failure_reply(req, exc)
        except Exception as exc:  # noqa: BLE001 - answered and logged, never a silent ack
            stats.errors += 1
            log.exception("search_crashed", request_id=req.request_id)
            return error_reply(req.request_id, "internal", f"{type(exc).__name__}: {exc}")
        stats.ok += 1
        stats.zero_hits += not reply.hits
        return reply

    async def _refuse(message: Any, exc: InvalidEventError) -> None:
        """An error reply where a request id is known, else the dead-letter topic."""
        _count_invalid()
        headers = _headers(message)
        addressed = addressed_error(message.value, _header_rid(headers), headers.get(REPLY_TOPIC_HEADER),
                                    code=exc.reason, message=str(exc), policy=policy)
        if addressed is None:
            await _dead_letter(message, exc.reason, str(exc))
            return
        await _reply(*addressed, _header_rid(headers))

    async def _salvage(message: Any, exc: Exception) -> None:
        """After an unexpected failure: a ``processing_error`` reply if the request id can be read,
        else (or if that reply cannot be sent) a dead letter; the last resort is a loud log line."""
        stats.errors += 1
        error = f"{type(exc).__name__}: {exc}"
        log.error("request_failed", topic=message.topic, partition=message.partition, offset=message.offset,
                  error=error[:500], exc_info=exc)
        try:
            headers = _headers(message)
            addressed = addressed_error(message.value, _header_rid(headers), headers.get(REPLY_TOPIC_HEADER),
                                        code=PROCESSING_ERROR, message=error, policy=policy)
            if addressed is None or not await _reply(*addressed, _header_rid(headers)):
                await _dead_letter(message, PROCESSING_ERROR, error)
        except Exception:  # noqa: BLE001 - the agent must outlive even this; the record is named in the log
            log.exception("request_lost", topic=message.topic, partition=message.partition, offset=message.offset)

    async def _dead_letter(message: Any, reason: str, error: str) -> None:
        stats.dead_lettered += 1
        metrics.DEAD_LETTERED.labels("query", reason).inc()
        log.warning("request_dead_lettered", reason=reason, error=error[:500])
        await dead_letter(topics.dead_letter, message, reason=reason, error=error, worker="query",
                          max_bytes=settings.dead_letter_max_bytes)

    async def _reply(topic_name: str, reply: SearchReply, correlation: bytes | None) -> bool:
        """Send ``reply`` and wait for the ack; False (logged and counted) if it could not be sent."""
        try:
            rid = reply.request_id.encode()
            fut = await topics.named(topic_name).send(
                key=rid, value=reply.model_dump_json().encode(),
                headers=[(CORRELATION_HEADER, correlation or rid), (REQUEST_ID_HEADER, rid)],
            )
            await fut
        except Exception as exc:  # noqa: BLE001 - e.g. a reply topic the broker refuses
            stats.reply_failures += 1
            log.warning("reply_failed", request_id=reply.request_id, topic=topic_name,
                        error=f"{type(exc).__name__}: {exc}")
            return False
        return True
