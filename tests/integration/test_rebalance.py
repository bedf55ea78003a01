"""Partitions moving between two indexers under load: nothing lost, nothing written by a fenced owner.

A second indexer joins, leaves (SIGTERM), joins again and is killed (``kill -9``) while a mixed
stream of edits, deletes and re-creates goes through the first one, so partitions move with
batches, read-backs and sweeps in flight. At the end the index must equal a clean load
(``freshet verify``, which also checks the state changelog's fence headers), and within every
partition of the state changelog and of the applied topic no record may come from a lower
consumer group generation than one before it (a write the fence let through).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from freshet.settings import Settings
from freshet.verify import run_verify, state_topic
from ops import procs
from ops.stack import Stack, drop_pipeline
from tests.chaos.workload import Workload, generate
from tests.integration.conftest import make_settings
from tests.integration.helpers import records_now, wait_healthy
from workers.fencing import GENERATION_HEADER, WRITER_HEADER, fence_violations, header

pytestmark = pytest.mark.integration


@pytest.fixture
def two_indexers(endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Settings]]:  # type: ignore[no-untyped-def]
    base = make_settings(endpoints, tmp_path / "a")
    first = Settings(**{**base.model_dump(), "topic_partitions": 4, "index_batch_size": 16})
    second = Settings(**{**first.model_dump(), "home": tmp_path / "b", "indexer_web_port": procs.free_port()})
    Stack(first).up(["indexer"])
    yield first, second
    Stack(second).down(["indexer"])
    Stack(first).down(["indexer"])
    drop_pipeline(first)


def start(settings: Settings) -> None:
    """Start a second indexer and wait until it serves /healthz (it has joined the group)."""
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    procs.spawn([sys.executable, "-m", "freshet.cli", "worker", "indexer"], log=settings.home / "logs" / "indexer.log",
                pidfile=settings.home / "run" / "indexer.pid", env=env)
    wait_healthy(settings.worker_url("indexer", "/healthz"), settings.home / "logs" / "indexer.log")


def publish_slowly(settings: Settings, work: Workload, seconds: float) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers.split(","), acks="all", linger_ms=5)
    pause = seconds / len(work.records)
    try:
        for rec in work.records:
            producer.send(settings.topic_changes, key=rec.key.encode(), value=rec.value)
            time.sleep(pause)
        producer.flush(60)
    finally:
        producer.close()


def violations(settings: Settings, topic: str) -> tuple[list[str], set[str]]:
    rows: list[tuple[int, int, str | None, str | None]] = []
    for r in records_now(settings, topic):
        rows.append((r.partition, r.offset, header(r.headers, GENERATION_HEADER), header(r.headers, WRITER_HEADER)))
    return fence_violations(rows), {g for _, _, g, _ in rows if g is not None}


def count(settings: Settings, event: str) -> int:
    log = settings.home / "logs" / "indexer.log"
    return log.read_text(encoding="utf-8").count(f'"event": "{event}"') if log.exists() else 0


def test_partitions_moving_under_load_lose_nothing_and_leak_no_fenced_write(
        two_indexers: tuple[Settings, Settings], record_property: Any) -> None:
    first, second = two_indexers
    work = generate(800, seed=11, docs=80, prefix="rebalance")
    # paced to last about as long as the six moves (8 s apart, a join 5-15 s): each lands under load
    writer = threading.Thread(target=publish_slowly, args=(first, work, 100.0))
    writer.start()
    pid_file = second.home / "run" / "indexer.pid"
    for move in ("join", "leave", "join", "kill", "join", "leave"):
        time.sleep(8)
        if move == "join":
            start(second)
        elif move == "leave":
            procs.stop(pid_file, timeout=30)
        else:
            pid = procs.read_pid(pid_file)
            assert pid is not None, "the second indexer died on its own"
            os.killpg(pid, signal.SIGKILL)
    writer.join()
    deadline = time.monotonic() + 300
    while (problems := run_verify(first)) and time.monotonic() < deadline:
        time.sleep(10)
    assert problems == []
    changelog, generations = violations(first, state_topic(first))
    applied, _ = violations(first, first.topic_applied)
    fenced = {e: sum(count(s, e) for s in (first, second)) for e in ("batch_fenced", "read_back_fenced",
                                                                      "sweep_fenced")}
    record_property("generations", len(generations))
    record_property("fenced", fenced)
    assert len(generations) >= 4, f"partitions moved fewer times than planned: generations {sorted(generations)}"
    # every assignment came with the state changelog's partitions (else no recovery ran)
    logs = [s.home / "logs" / "indexer.log" for s in (first, second)]
    unassigned = [line for log in logs for line in log.read_text(encoding="utf-8").splitlines()
                  if "Ignoring missing topic" in line or "state_partitions_unassigned" in line]
    assert unassigned == []
    assert changelog == [] and applied == []
