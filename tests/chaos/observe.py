"""What the chaos scenarios watch while they run: the applied topic, health, and search replies.

Each watcher is a daemon thread with real Kafka or HTTP clients that outlives a broker or worker
restart (errors are recorded and retried, never raised), so a scenario reads its figures after
the fault instead of dying with it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from freshet.client import SearchClient
from freshet.kafka_access import KafkaAccess, access
from freshet.settings import Settings
from schemas.applied import AppliedRecord, ProgressRecord, parse_applied
from schemas.change import document_key
from schemas.search import SearchReply
from tests.chaos.workload import Record


class _Loop(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.halt = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


class AppliedFollower(_Loop):
    """Follows the applied topic from its beginning: each document's latest applied record and,
    per changes partition, when each progress mark (``through``) was first seen."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("chaos-applied")
        self.s = settings
        self.lock = threading.Lock()
        self.docs: dict[str, AppliedRecord] = {}
        self.through: dict[int, int] = {}
        self.marks: list[tuple[float, int, int]] = []  # (record timestamp, s; partition; through)
        self.unreadable = 0

    def run(self) -> None:
        consumer = None
        while not self.halt.is_set():
            try:
                if consumer is None:
                    consumer = _assigned(self.s.bootstrap_servers, self.s.topic_applied)
                for batch in consumer.poll(timeout_ms=200).values():
                    for r in batch:
                        self._on(r)
            except Exception as exc:  # noqa: BLE001 - a broker outage: reconnect, keep the position
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(1)
        if consumer is not None:
            consumer.close()

    def _on(self, r: Any) -> None:
        if r.value is None:
            return
        try:
            rec = parse_applied(r.value)
        except ValueError:
            self.unreadable += 1  # e.g. a search reply a hostile reply_to sent here
            return
        # when the indexer produced it (wall clock), not when this reader, maybe reconnecting, saw it
        now = r.timestamp / 1000 if r.timestamp else time.time()
        with self.lock:
            if isinstance(rec, ProgressRecord):
                if rec.through > self.through.get(rec.partition, -1):
                    self.through[rec.partition] = rec.through
                    self.marks.append((now, rec.partition, rec.through))
            else:
                self.docs[document_key(rec.tenant, rec.doc_id)] = rec

    def handled(self, needed: dict[int, int]) -> bool:
        """Whether every changes partition is handled through ``needed[p]`` (exclusive)."""
        with self.lock:
            return all(self.through.get(p, 0) >= n for p, n in needed.items())

    def handled_at(self, needed: dict[int, int], since: float) -> float | None:
        """The first moment (wall clock) at or after ``since`` when every partition was handled through
        ``needed``."""
        with self.lock:
            marks = list(self.marks)
        at = since
        for p, n in needed.items():
            hit = next((t for t, q, th in marks if q == p and th >= n), None)
            if hit is None:
                return None
            at = max(at, hit)
        return at


def _assigned(bootstrap: KafkaAccess | str, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(**access(bootstrap).kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="chaos", max_partition_fetch_bytes=8 * 1024 * 1024)
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        consumer.close()
        raise RuntimeError(f"topic {topic} has no partitions yet")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


class HealthPoller(_Loop):
    """Polls each worker's ``/healthz`` every ``period`` seconds; counts answers that were not ready."""

    def __init__(self, settings: Settings, roles: Sequence[str] = ("indexer", "query"), period: float = 0.5) -> None:
        super().__init__("chaos-health")
        self.urls = {role: settings.worker_url(role, "/healthz") for role in roles}
        self.period = period
        self.polls = 0
        self.bad: list[tuple[float, str, str]] = []

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.halt.wait(self.period):
                for role, url in self.urls.items():
                    self.polls += 1
                    try:
                        res = client.get(url)
                        ok = res.status_code == 200 and res.json().get("ready") is True
                        why = "" if ok else f"HTTP {res.status_code} {res.text[:80]}"
                    except httpx.HTTPError as exc:
                        ok, why = False, f"{type(exc).__name__}: {exc}"
                    if not ok:
                        self.bad.append((time.monotonic(), role, why))

    def bad_between(self, start: float, end: float, role: str) -> int:
        return sum(1 for t, r, _ in self.bad if r == role and start <= t <= end)


@dataclass
class Search:
    """One search request sent by :class:`SearchLoad` and what became of it."""

    sent: float
    deadline_s: float
    done: float | None = None
    status: str = "none"
    code: str | None = None

    @property
    def within_deadline(self) -> bool:
        return self.done is not None and self.done - self.sent <= self.deadline_s + 1.0  # 1 s for the round trip


QUERIES = ("kafka offset replay", "weaviate shard outage", "embedding model latency", "tenant version delete",
           "consumer rebalance crash", "golden recall probe", "stale duplicate event", "freshness backlog window")


class SearchLoad(_Loop):
    """Sends hybrid searches at ``rate`` per second over a :class:`SearchClient` and records each outcome."""

    def __init__(self, settings: Settings, rate: float = 2.0, deadline_s: float = 4.0) -> None:
        super().__init__("chaos-search")
        self.s = settings
        self.rate = rate
        self.deadline_s = deadline_s
        self.searches: list[Search] = []
        self._client: SearchClient | None = None

    def run(self) -> None:
        n = 0
        while not self.halt.wait(1.0 / self.rate):
            try:
                if self._client is None:
                    self._client = SearchClient(self.s.bootstrap_servers, request_topic=self.s.topic_requests,
                                                reply_topic=self.s.topic_replies, timeout=self.deadline_s + 5)
                n += 1
                s = Search(time.monotonic(), self.deadline_s)
                fut = self._client.submit(QUERIES[n % len(QUERIES)], deadline_ms=int(self.deadline_s * 1000),
                                          timeout=self.deadline_s + 5, top_k=5)
                self.searches.append(s)
                fut.add_done_callback(lambda f, s=s: _settle(s, f))
            except Exception as exc:  # noqa: BLE001 - e.g. the broker is away; try again
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(1)
        time.sleep(self.deadline_s + 6)  # let the last ones settle
        if self._client is not None:
            self._client.close()

    def between(self, start: float, end: float) -> list[Search]:
        return [s for s in self.searches if start <= s.sent <= end]


def _settle(s: Search, fut: Future[SearchReply]) -> None:
    s.done = time.monotonic()
    exc = fut.exception()
    if exc is not None:
        s.done, s.status = None, "no_reply"
        return
    reply = fut.result()
    s.status, s.code = reply.status, reply.error.code if reply.error else None


@dataclass(frozen=True)
class Outgoing:
    """One raw record to send: any bytes, any headers, optionally a forged timestamp."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


def outgoing(records: Sequence[Record], topic: str) -> list[Outgoing]:
    return [Outgoing(topic, r.key.encode(), r.value) for r in records]


@dataclass
class Publisher:
    """Publishes records in order at ``rate`` per second with an idempotent producer (a broker
    restart neither loses nor reorders them) and remembers where each landed."""

    settings: Settings
    rate: float
    sent: int = 0
    positions: list[tuple[int, int]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    """Wall-clock time of each send (Kafka record timestamps are wall-clock too)."""
    failures: list[str] = field(default_factory=list)

    def producer(self) -> KafkaProducer:
        return KafkaProducer(**self.settings.kafka_access.kafka_python(), acks="all",
                             enable_idempotence=True, linger_ms=5, max_request_size=8 * 1024 * 1024,
                             delivery_timeout_ms=300_000, max_block_ms=300_000, client_id="chaos-publisher")

    def publish(self, records: Sequence[Outgoing], halt: threading.Event | None = None) -> None:
        producer = self.producer()
        futures: list[Any] = []
        start = time.monotonic()
        try:
            for i, rec in enumerate(records):
                if halt is not None and halt.is_set():
                    break
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.sent_at.append(time.time())
                try:
                    futures.append(producer.send(rec.topic, key=rec.key, value=rec.value, headers=list(rec.headers),
                                                 timestamp_ms=rec.timestamp_ms))
                except Exception as exc:  # noqa: BLE001 - refused by the client: recorded, the stream goes on
                    futures.append(None)
                    self.failures.append(f"record {i} refused: {type(exc).__name__}: {exc}")
                self.sent = i + 1
            producer.flush(timeout=600)
            for fut in futures:
                if fut is None:
                    self.positions.append((-1, -1))
                    continue
                try:
                    md = fut.get(timeout=600)
                    self.positions.append((md.partition, md.offset))
                except Exception as exc:  # noqa: BLE001 - recorded: the scenario fails on it
                    n = len(self.positions)
                    self.failures.append(f"record {n} ({records[n].topic}, {len(records[n].value or b'')} bytes): "
                                         f"{type(exc).__name__}: {exc}")
                    self.positions.append((-1, -1))
        finally:
            producer.close()

    def needed(self, upto: int, records: Sequence[Outgoing], topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset after the last of the first ``upto`` records."""
        out: dict[int, int] = {}
        for (p, o), rec in zip(self.positions[:upto], records, strict=False):
            if p >= 0 and rec.topic == topic:
                out[p] = max(out.get(p, 0), o + 1)
        return out


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**settings.kafka_access.kafka_python(), group_id=None,
                             enable_auto_commit=False, client_id="chaos")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_backs(log_path: Any) -> int:
    """Records the delivery guard read back, summed over every run of the indexer in its log."""
    total = 0
    with contextlib.suppress(FileNotFoundError), open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if "skipped_records_read_back" not in line:
                continue
            with contextlib.suppress(ValueError, AttributeError):
                total += int(json.loads(line).get("records", 0))
    return total


def log_events(log_path: Any, *names: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``log_path`` whose event is one of ``names`` (or any ERROR/CRITICAL line)."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            if rec.get("event") in names or (not names and rec.get("level") in ("error", "critical")):
                out.append(rec)
    return out


def new_id() -> str:
    return uuid.uuid4().hex[:12]
