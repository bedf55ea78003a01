"""Scenario 1: ``kill -9`` of the indexer at random moments mid-stream, restarted each time."""

from __future__ import annotations

import random
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


def test_indexer_killed_repeatedly_loses_nothing(live_services: Services, chaos_dir: Path, report_dir: Path,
                                                 scale: Scale, embedder: SentenceTransformerEmbedder) -> None:
    wl = generate(scale.events, seed=scale.seed, prefix="kills")
    rnd = random.Random(scale.seed + 1)
    with Scenario(live_services, chaos_dir, "indexer-kills", report_dir, rate=scale.rate) as sc:
        sc.row.events = len(wl.records)

        def kill_loop(s: Scenario) -> None:
            assert s.pipeline is not None
            pidfile = s.pipeline.pidfile("indexer")
            for n in range(scale.kills):
                time.sleep(rnd.uniform(1.0, 6.0))  # a random moment of a running, busy indexer
                faults.kill9(pidfile)
                s.row.faults = f"{n + 1} × kill -9 indexer"
                time.sleep(rnd.uniform(0.0, 2.0))
                s.pipeline.stack.up(["indexer"])
                s.fault_ended()

        sc.stream(outgoing(wl.records, sc.settings.topic_changes), kill_loop)
        sc.finish(wl.final, embedder, good=range(len(wl.records)))
        if len(sc.fault_marks) < scale.kills:
            sc.fail(f"only {len(sc.fault_marks)} of {scale.kills} kills happened")
    assert not sc.row.failures, "\n".join(sc.row.failures)
