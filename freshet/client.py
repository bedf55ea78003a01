"""Kafka clients for the services around freshet (kafka-python, synchronous, thread-safe).

* :class:`DocumentPublisher` publishes change events and returns where each landed.
* :class:`SearchClient` sends search requests and waits for the correlated replies; many requests
  may be in flight over its one reply consumer.
* :class:`AppliedWatcher` follows the applied topic, to wait until changes are searchable.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from freshet.errors import FreshetError, TransientError
from freshet.kafka_access import KafkaAccess, access, refusals, refused
from schemas.applied import AppliedRecord, parse_applied
from schemas.change import ChangeEvent, document_key
from schemas.search import CORRELATION_HEADER, REQUEST_ID_HEADER, OffsetFence, SearchReply, SearchRequest

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Position:
    """Where a record landed: usable as a consistency fence."""

    topic: str
    partition: int
    offset: int


def producer(bootstrap: KafkaAccess | str, *, linger_ms: int) -> KafkaProducer:
    with refusals() as seen:
        try:
            # acks=all with idempotence: a retried send is never written twice, and with the cluster's
            # min.insync.replicas=2 an acknowledged record is on two brokers.
            return KafkaProducer(**access(bootstrap).kafka_python(), acks="all", enable_idempotence=True,
                                 linger_ms=linger_ms, max_request_size=8 * 1024 * 1024, client_id="freshet-client")
        except (KafkaError, OSError) as exc:
            raise refused(exc, seen, bootstrap) from exc


def _tail_consumer(bootstrap: KafkaAccess | str, topic: str) -> KafkaConsumer:
    """A group-less consumer of every partition of ``topic``, positioned at its end."""
    consumer = KafkaConsumer(**access(bootstrap).kafka_python(), enable_auto_commit=False,
                             group_id=None, client_id="freshet-client")
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        consumer.close()
        raise FreshetError(f"topic {topic!r} does not exist; is the stack up (make up)?")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the end offsets now, before anything is sent
        consumer.position(tp)
    return consumer


def read_to_end(bootstrap: KafkaAccess | str, topic: str, *, missing_ok: bool = True) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end (group-less; for tools).
    A topic the broker does not know reads as empty, or raises with ``missing_ok=False``."""
    consumer = KafkaConsumer(**access(bootstrap).kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="freshet-tools", max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            if missing_ok:
                return []
            raise FreshetError(f"topic {topic!r} does not exist on {bootstrap}")
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        consumer.close()


class Session:
    """What one client has seen of the changes topic, for session consistency across query workers.

    It keeps, per changes partition, the highest position the client knows to exist: past its own
    writes (``saw_write``, called by a :class:`DocumentPublisher` given this session) and the views
    its replies were answered from (``saw_reply``, called by a :class:`SearchClient` given it).
    :meth:`fence` turns them into offset fences: a worker answers a request carrying them only once
    its applied view has reached every one, so the client never reads back in time (monotonic reads,
    and read-your-writes for its own writes), whichever query worker answers. Thread-safe.
    """

    def __init__(self) -> None:
        self._through: dict[int, int] = {}
        self._lock = threading.Lock()

    def _see(self, partition: int, through: int) -> None:
        with self._lock:
            if through > self._through.get(partition, 0):
                self._through[partition] = through

    def saw_write(self, position: Position) -> None:
        """The client wrote a record there: its next searches must see it."""
        self._see(position.partition, position.offset + 1)

    def saw_reply(self, reply: SearchReply) -> None:
        """The client was answered from this view: its next searches must not see less."""
        for v in reply.view:
            self._see(v.partition, v.through)

    def fence(self) -> list[OffsetFence] | None:
        """The offset fences of the next request (None before anything was seen)."""
        with self._lock:
            fences = [OffsetFence(partition=p, offset=t - 1) for p, t in sorted(self._through.items()) if t > 0]
        return fences or None


class DocumentPublisher:
    """Publishes :class:`ChangeEvent` records keyed by document identity; with a ``session``, each
    acknowledged write moves that session's fence past it."""

    def __init__(self, bootstrap: KafkaAccess | str, topic: str, *, session: Session | None = None) -> None:
        self._topic = topic
        self._producer = producer(bootstrap, linger_ms=5)  # a bulk publish fills batches
        self._session = session

    def publish(self, event: ChangeEvent) -> Future[Position]:
        """Send ``event``; the future resolves to its position once the broker acknowledged it."""
        return self._send(event.key.encode(), event.model_dump_json(exclude_none=True).encode())

    def delete(self, doc_id: str, tenant: str | None = None) -> Future[Position]:
        """Publish a tombstone (null value) for the document."""
        return self._send(document_key(tenant, doc_id).encode(), None)

    def _send(self, key: bytes, value: bytes | None) -> Future[Position]:
        out: Future[Position] = Future()
        fut = self._producer.send(self._topic, key=key, value=value)
        fut.add_callback(lambda md: self._acknowledged(out, Position(md.topic, md.partition, md.offset)))
        fut.add_errback(lambda exc: out.set_exception(TransientError(f"publish failed: {exc}")))
        return out

    def _acknowledged(self, out: Future[Position], position: Position) -> None:
        if self._session is not None:
            self._session.saw_write(position)
        out.set_result(position)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout)

    def close(self) -> None:
        self._producer.close()


class _Tail(threading.Thread):
    """Polls a group-less consumer and hands each record to ``on_record``; ``on_idle`` after each poll."""

    def __init__(self, consumer: KafkaConsumer, on_record: Any, on_idle: Any = None) -> None:
        super().__init__(daemon=True, name="freshet-tail")
        self._consumer = consumer
        self._on_record = on_record
        self._on_idle = on_idle
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                for record in records:
                    try:
                        self._on_record(record)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the thread
                        log.warning("unreadable_record_skipped", topic=record.topic, partition=record.partition,
                                    offset=record.offset, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:  # noqa: BLE001 - keep the thread alive; logged
                    log.exception("tail_idle_failed")
        self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class SearchClient:
    """Request-reply search over Kafka: many requests in flight over one reply consumer.

    Each request carries a ``deadline_ms`` (its timeout, unless given) so the query worker drops it
    once nobody waits any more; a request without a reply by then fails its future with
    :class:`TransientError`. Replies are matched by the ``correlation_id`` header.
    """

    def __init__(self, bootstrap: KafkaAccess | str, *, request_topic: str, reply_topic: str, timeout: float = 30.0,
                 session: Session | None = None) -> None:
        self.session = session
        """With a :class:`Session`, every request without its own ``consistency`` carries the session's
        fence, and every reply moves the session forward (see :class:`Session`)."""
        self._request_topic = request_topic
        self._reply_topic = reply_topic
        self._timeout = timeout
        self._pending: dict[str, tuple[Future[SearchReply], float]] = {}
        self._lock = threading.Lock()
        self._producer = producer(bootstrap, linger_ms=0)  # a request goes out at once, never waits for company
        self._tail = _Tail(_tail_consumer(bootstrap, reply_topic), self._on_reply, self._expire)
        self._tail.start()

    def _on_reply(self, record: Any) -> None:
        rid = dict(record.headers or []).get(CORRELATION_HEADER, record.key or b"").decode("utf-8", "replace")
        with self._lock:
            if rid not in self._pending or record.value is None:
                return
        reply = SearchReply.model_validate_json(record.value)  # unreadable: the future stays, then expires
        with self._lock:
            fut, _ = self._pending.pop(rid, (None, 0.0))
        if self.session is not None and reply.status == "ok":
            self.session.saw_reply(reply)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [rid for rid, (_, deadline) in self._pending.items() if deadline < now]
            futures = [self._pending.pop(rid)[0] for rid in gone]
        for fut in futures:
            if fut.done():
                continue
            fut.set_exception(TransientError(
                f"no reply on {self._reply_topic!r} in time; is the query worker running (make status)?"))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def submit(self, query: str, *, timeout: float | None = None, **fields: Any) -> Future[SearchReply]:
        """Send a request (fields of :class:`SearchRequest`) without waiting; the future fails with
        :class:`TransientError` when no reply came within ``timeout`` seconds."""
        wait = timeout or self._timeout
        fields.setdefault("deadline_ms", int(wait * 1000))
        if self.session is not None and fields.get("consistency") is None:
            fields["consistency"] = self.session.fence()
        req = SearchRequest(request_id=fields.pop("request_id", None) or uuid.uuid4().hex, query=query,
                            reply_to=self._reply_topic, **fields)
        fut: Future[SearchReply] = Future()
        with self._lock:
            self._pending[req.request_id] = (fut, time.monotonic() + wait)
        rid = req.request_id.encode()
        body = req.model_dump_json(exclude_none=True, by_alias=True).encode()
        self._producer.send(self._request_topic, key=rid, value=body,
                            headers=[(CORRELATION_HEADER, rid), (REQUEST_ID_HEADER, rid)])
        return fut

    def search(self, query: str, *, timeout: float | None = None, **fields: Any) -> SearchReply:
        """Send a request and wait for its reply (raises :class:`TransientError` on timeout)."""
        fut = self.submit(query, timeout=timeout, **fields)
        try:
            return fut.result((timeout or self._timeout) + 1)
        except FutureTimeout as exc:
            raise TransientError(f"no reply on {self._reply_topic!r} within {timeout or self._timeout:.0f}s; "
                                 "is the query worker running (make status)?") from exc

    def close(self) -> None:
        self._tail.stop()
        self._producer.close()


class AppliedWatcher:
    """Follows the applied topic from now on, to wait for documents to reach a version."""

    def __init__(self, bootstrap: KafkaAccess | str, topic: str) -> None:
        self._applied: dict[str, int] = {}
        self._cond = threading.Condition()
        self._tail = _Tail(_tail_consumer(bootstrap, topic), self._on_record)
        self._tail.start()

    def _on_record(self, record: Any) -> None:
        rec = parse_applied(record.value)
        if not isinstance(rec, AppliedRecord):
            return
        key = document_key(rec.tenant, rec.doc_id)
        with self._cond:
            self._applied[key] = max(rec.version, self._applied.get(key, -1))
            self._cond.notify_all()

    def count_applied(self, wanted: dict[str, int]) -> int:
        """How many of ``wanted`` (document key -> version) are applied at that version or later."""
        with self._cond:
            return sum(1 for k, v in wanted.items() if self._applied.get(k, -1) >= v)

    def wait(self, wanted: dict[str, int], timeout: float) -> bool:
        """Block until every document in ``wanted`` is applied (True) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: all(self._applied.get(k, -1) >= v for k, v in wanted.items()),
                                       timeout)

    def close(self) -> None:
        self._tail.stop()


def wanted_versions(events: Iterable[ChangeEvent]) -> dict[str, int]:
    """Document key -> highest version among ``events`` (what to wait for)."""
    out: dict[str, int] = {}
    for ev in events:
        out[ev.key] = max(ev.version, out.get(ev.key, -1))
    return out
