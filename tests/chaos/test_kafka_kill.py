"""Scenario 3: the Kafka broker killed (``kill -9``) mid-stream and restarted; the workers stay up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ops import faults
from tests.chaos.conftest import Scale
from tests.chaos.observe import outgoing
from tests.chaos.scenario import Scenario
from tests.chaos.services import Services
from tests.chaos.workload import generate
from workers.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.chaos


def test_kafka_broker_killed_mid_stream(live_services: Services, chaos_dir: Path, report_dir: Path, scale: Scale,
                                        embedder: SentenceTransformerEmbedder) -> None:
    wl = generate(scale.events, seed=scale.seed + 3, prefix="kafka")
    down_for = max(5.0, scale.outage_seconds / 2)
    with Scenario(live_services, chaos_dir, "kafka-kill", report_dir, rate=scale.rate) as sc:
        sc.row.events = len(wl.records)
        before = {}

        def broker_kill(s: Scenario) -> None:
            assert s.pipeline is not None
            before.update(s.pipeline.identities())
            s.wait_published(0.35)
            faults.kill9(live_services.pidfile("kafka"))
            time.sleep(down_for)
            live_services.stack.up(["kafka"])
            s.fault_ended()
            s.row.faults = f"kill -9 Kafka broker, down {down_for:.0f} s, restarted"

        sc.stream(outgoing(wl.records, sc.settings.topic_changes), broker_kill)
        sc.finish(wl.final, embedder, good=range(len(wl.records)))
        assert sc.pipeline is not None
        after = sc.pipeline.identities()
        if after != before:
            sc.fail(f"a worker exited or restarted while the broker was away: before {before}, after {after}")
    assert not sc.row.failures, "\n".join(sc.row.failures)
