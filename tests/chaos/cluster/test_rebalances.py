"""Issue 10, first acceptance test: partitions move under load and nothing is lost.

Two indexers index a seeded mixed stream (edits, metadata changes, deletes, tombstones, re-creates
of the same documents, stale and duplicate versions). Meanwhile, ``CHAOS_KILLS / 2`` times (5 at
full scale): a third indexer joins, one of the first two (the owners of partitions: Faust gives the
third member of a 4-partition group none) is killed with ``kill -9`` and restarted, and the third
leaves (SIGTERM: it leaves the group). Then every check of the tier:
each document's applied record, the index equal to a clean load (0 lost, 0 stale, 0 duplicated),
``freshet verify --vectors``, no good event dead-lettered; the row reports the rebalances (from
the indexers' logs), the partition hand-overs, the read-backs and the batches the fence dropped.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest

from ops import faults
from tests.chaos.cluster.conftest import opted_in
from tests.chaos.cluster.nodes import ClusterNodes
from tests.chaos.cluster.scenario import ClusterScenario
from tests.chaos.conftest import Scale
from tests.chaos.observe import outgoing
from tests.chaos.scenario import Scenario
from tests.chaos.workload import generate
from workers.embedding import SentenceTransformerEmbedder

pytestmark = [pytest.mark.chaos, opted_in]

#: Seconds one cycle takes on a busy 2-core machine, with margin (a joining indexer is ready 5-15 s
#: after its spawn, a restart after kill -9 as soon; the whole cycle took 22-40 s in a full-scale run):
#: the stream is paced to last about as long as the cycles, so the partitions move under load (the row
#: says how many faults did).
CYCLE_SECONDS = 60.0
#: The victims of kill -9: the two indexers that own partitions (Faust's assignor gives a third member of
#: a 4-partition group none, so killing it would move nothing).
VICTIMS = ("indexer", "indexer-2")


def test_indexers_join_leave_and_die_under_load(cluster: ClusterNodes, chaos_dir: Path, cluster_report_dir: Path,
                                                scale: Scale, embedder: SentenceTransformerEmbedder) -> None:
    cycles = max(1, math.ceil(scale.kills / 2))
    wl = generate(scale.events, seed=scale.seed + 10, prefix="rebalance")
    rate = min(scale.rate, max(5.0, len(wl.records) / (cycles * CYCLE_SECONDS)))
    rnd = random.Random(scale.seed + 11)
    done = {"join": 0, "leave": 0, "kill": 0, "under_load": 0}
    victims: list[str] = []
    with ClusterScenario(cluster, chaos_dir / "cluster", "cluster-rebalances", cluster_report_dir,
                         rate=rate) as sc:
        sc.row.events = len(wl.records)

        def fault(name: str) -> None:
            done[name] += 1
            done["under_load"] += sc.under_load()
            sc.row.faults = (f"{done['join']} joins + {done['leave']} leaves of a 3rd indexer, {done['kill']} × "
                             f"kill -9 indexer ({done['under_load']} of {done['join'] + done['leave'] + done['kill']}"
                             f" while publishing, {rate:.0f} events/s)")

        def cycle_loop(s: Scenario) -> None:
            assert s.pipeline is not None
            three = sc.workers(indexers=3)
            for n in range(cycles):
                s.wait_published(n / cycles)
                three.up(["indexer"])  # indexer-3 joins (the others run: only it starts)
                fault("join")
                time.sleep(rnd.uniform(1.0, 6.0))
                victim = rnd.choice(VICTIMS)
                faults.kill9(s.pipeline.pidfile(victim))
                fault("kill")
                victims.append(victim)
                time.sleep(rnd.uniform(0.0, 2.0))
                three.up(["indexer"])  # restarts the victim
                s.fault_ended()
                time.sleep(rnd.uniform(1.0, 6.0))
                three.down(["indexer-3"])  # a graceful stop: it leaves the group
                fault("leave")
                s.fault_ended()

        sc.stream(outgoing(wl.records, sc.settings.topic_changes), cycle_loop)
        sc.finish(wl.final, embedder, good=range(len(wl.records)))
        sc.note_logs()
        sc.row.notes.append(f"kill -9 victims: {victims}; workload kinds: {dict(wl.kinds)}")
        if min(done["join"], done["leave"], done["kill"]) < cycles:
            sc.fail(f"only {done} of {cycles} cycles happened")
    assert not sc.row.failures, "\n".join(sc.row.failures)
