"""Poison records against the real services: none stops the indexer, each is dead-lettered once.

Each hostile record below once crashed the indexer agent (or froze its loop), after which Faust
restarted it onto the same record, the delivery guard dead-lettered the same records again every
period, and a good event published after them was never applied.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from freshet.settings import Settings
from ops import procs
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from schemas.deadletter import REASON, SOURCE_OFFSET, TRUNCATED
from tests.integration.conftest import make_settings
from tests.integration.helpers import publish_and_wait, send_raw

pytestmark = pytest.mark.integration

DEFAULT_MAX = Settings.model_fields["max_document_bytes"].default


def _nested(depth: int) -> bytes:
    return (b'{"doc_id": "deep.md", "op": "upsert", "version": 1, "content": "x", "metadata": {"a": '
            + b"[" * depth + b"]" * depth + b"}}")


def _oversized() -> bytes:
    head = b'{"doc_id": "big.md", "op": "upsert", "version": 1, "content": "'
    return head + b"y" * (DEFAULT_MAX + 500 - len(head) - 2) + b'"}'


#: (key, value, expected dead-letter reason)
POISON: list[tuple[bytes | None, bytes | None, str]] = [
    (b"t\x1f", None, "schema"),                       # a tombstone whose key names no document
    (b"k" * 600, None, "schema"),                     # a tombstone key over the doc_id limit
    (b"deep.md", _nested(1000), "invalid_json"),      # ~1,000 levels deep: RecursionError
    (b"big.md", _oversized(), "oversized"),           # its dead letter is over the producer's request size
    (b"ctl", json.dumps({"doc_id": "acme\x1fsecret.md", "op": "upsert", "version": 1, "content": "x"}).encode(),
     "schema"),                                       # an identity that would alias tenant acme's secret.md
]


@pytest.fixture
def indexer(endpoints, tmp_path: Path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """An indexer at the default document cap (the other tests lower it) with a fast tail check."""
    base = make_settings(endpoints, tmp_path)
    settings = Settings(**{**base.model_dump(), "max_document_bytes": DEFAULT_MAX, "delivery_check_seconds": 1.0})
    stack = Stack(settings)
    stack.up(["indexer"])
    yield settings
    stack.down(["indexer"])
    drop_pipeline(settings)


def _dead_letters(settings: Settings, seconds: float) -> list[dict[str, bytes]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic_dead_letter, bootstrap_servers=settings.bootstrap_servers.split(","),
                             auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=4_000_000, fetch_max_bytes=8_000_000)
    out: list[dict[str, bytes]] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out += [{**dict(r.headers), "value_length": str(len(r.value or b"")).encode()} for r in batch]
    finally:
        consumer.close()
    return out


def test_poison_records_are_dead_lettered_once_and_the_indexer_goes_on(indexer: Settings) -> None:
    health_url = f"http://127.0.0.1:{indexer.indexer_web_port}/healthz"
    pid = procs.read_pid(indexer.home / "run" / "indexer.pid")
    unhealthy: list[str] = []
    stop = threading.Event()

    def watch_health() -> None:
        while not stop.is_set():
            try:
                r = httpx.get(health_url, timeout=5)
                if r.status_code != 200:
                    unhealthy.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                unhealthy.append(f"{type(exc).__name__}: {exc}")
            stop.wait(0.5)

    watcher_thread = threading.Thread(target=watch_health, daemon=True)
    watcher_thread.start()
    try:
        for key, value, _ in POISON:
            send_raw(indexer, indexer.topic_changes, key, value)
        good = [ChangeEvent(doc_id=f"good/{i}.md", op="upsert", version=1, content=f"# Good {i}\n\nStill indexed.")
                for i in range(4)]
        # valid, so applied, but its heading once took the chunker's regex minutes, on the event loop
        good.append(ChangeEvent(doc_id="hostile.md", op="upsert", version=1,
                                content="# a" + " " * 150_000 + "b\n\ntext after a pathological heading"))
        publish_and_wait(indexer, good, timeout=120)  # applied although poison came first on every partition
        letters = _dead_letters(indexer, seconds=6)  # several tail-check periods: no duplicates appear
    finally:
        stop.set()
        watcher_thread.join(timeout=10)
    assert procs.read_pid(indexer.home / "run" / "indexer.pid") == pid
    assert not unhealthy, f"/healthz failed while handling poison: {unhealthy[:3]}"
    reasons = Counter(h[REASON].decode() for h in letters)
    assert reasons == Counter(reason for *_, reason in POISON), reasons
    per_record = Counter((h["freshet.source.partition"], h[SOURCE_OFFSET]) for h in letters)
    assert max(per_record.values()) == 1, f"dead-lettered more than once: {per_record}"
    [big] = [h for h in letters if h[REASON] == b"oversized"]
    assert big[TRUNCATED].startswith(f"value {DEFAULT_MAX + 500} bytes".encode())
    assert int(big["value_length"]) <= indexer.dead_letter_max_bytes
    log = (indexer.home / "logs" / "indexer.log").read_text(encoding="utf-8")
    assert "indexer_agent_died" not in log and "Crashed reason" not in log
