"""The chaos tier's own local cluster, and the workers each cluster scenario runs on it.

:func:`start_nodes` starts 3 KRaft brokers (RF 3, ``min.insync.replicas=2``) and 3 Weaviate nodes
(RF 3, QUORUM) with the project's launcher, on free ports, under ``<chaos dir>/cluster/nodes``; the
session starts them once and stops them at its end. Each scenario then runs its own 2 indexers and
2 query workers on its own topics and collection (:func:`worker_stack`): a launcher ``Stack`` whose
home is the scenario's and whose saved layout names the running nodes, so its workers are spawned
exactly as ``freshet stack up --brokers 3 --weaviate-nodes 3 --indexers 2 --query-workers 2``
spawns them (every broker in the bootstrap list, worker k on Weaviate node ((k - 1) mod 3) + 1).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from freshet.settings import Settings
from ops import cluster, procs
from ops.cluster import Shape
from ops.stack import Stack

#: The cluster of the issue: 3 brokers, 3 Weaviate nodes, 2 indexers, 2 query workers.
SHAPE = Shape(brokers=3, weaviate_nodes=3, indexers=2, query_workers=2)
NODE_KINDS = ("kafka", "weaviate")
#: A broker log line: its time (local, to the millisecond) and text.
_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \w+ (.*)$")


@dataclass(frozen=True)
class ClusterNodes:
    """The running brokers and Weaviate nodes: ``stack.s`` are the settings every client uses."""

    stack: Stack

    @property
    def settings(self) -> Settings:
        return self.stack.s

    def pidfile(self, name: str) -> Path:
        """The pid file of one node: ``kafka-2``, ``weaviate-3``, ..."""
        return self.stack.home / "run" / f"{name}.pid"

    def restart(self, kind: str) -> None:
        """Start every node of ``kind`` that is down and wait until the whole quorum is back.

        A launcher built anew: one that started this home when it was empty compares the shape with
        the one it found then (none: one broker) and would refuse to start a node of three.
        """
        Stack(self.stack.s, self.stack.shape).up([kind])

    def broker_log(self, since: float) -> list[tuple[float, str]]:
        """Every broker's log lines written since ``since`` (wall clock), oldest first."""
        out: list[tuple[float, str]] = []
        for path in sorted((self.stack.home / "logs").glob("kafka*.log")):
            for line in path.read_text(errors="replace").splitlines():
                m = _LOG_LINE.match(line)
                if m:
                    at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    if at >= since:
                        out.append((at, m.group(2)))
        return sorted(out)

    def active_controller(self) -> str:
        """The broker that is the active KRaft controller now (the last one its logs say was elected)."""
        leaders = [m for _, text in self.broker_log(0.0)
                   if (m := re.search(r"\[RaftManager id=(\d+)\] Completed transition to Leader", text))]
        if not leaders:
            raise AssertionError(f"no broker log under {self.stack.home / 'logs'} names an elected controller")
        node = int(leaders[-1].group(1))
        return "kafka" if node == 1 else f"kafka-{node}"

    def fenced(self, broker: int, since: float) -> tuple[float | None, bool]:
        """When the KRaft controller fenced ``broker`` (its session timed out) after ``since``, and whether
        a new controller was elected meanwhile (the dead broker was the active controller)."""
        lines = self.broker_log(since)
        at = next((t for t, text in lines if f"Fencing broker {broker} because its session has timed out" in text),
                  None)
        elected = any("Completed transition to Leader" in text for t, text in lines if at is None or t <= at)
        return at, elected


def stop_everything(root: Path) -> list[str]:
    """Stop every process a cluster run left under ``root`` (by pid file): workers first, then the
    brokers and Weaviate nodes together (a KRaft quorum stopped one by one hangs); their names."""
    # <root>/<home>/run/*.pid only: a recursive glob walks the brokers' data directories while they
    # delete a dropped topic's, and fails on the vanished directory (FileNotFoundError).
    pidfiles = sorted(root.glob("*/run/*.pid"))
    workers = [p for p in pidfiles if p.stem.split("-")[0] not in NODE_KINDS]
    nodes = [p for p in pidfiles if p.stem.split("-")[0] in NODE_KINDS]
    stopped = procs.stop_all(workers, timeout=30) + procs.stop_all(nodes, timeout=45)
    return [p.stem for p in stopped]


def start_nodes(root: Path) -> ClusterNodes:
    """Fresh brokers and Weaviate nodes on free ports under ``root / 'nodes'`` (leftovers stopped,
    the home wiped first)."""
    stop_everything(root)
    home = root / "nodes"
    shutil.rmtree(home, ignore_errors=True)
    free = procs.free_port
    base = Settings(home=home, kafka_bootstrap="", kafka_host="127.0.0.1", kafka_port=free(),
                    kafka_controller_port=free(), weaviate_host="127.0.0.1", weaviate_http_port=free(),
                    weaviate_grpc_port=free(), indexer_web_port=free(), query_web_port=free(), indexer_url="",
                    topic_partitions=4, start_timeout_seconds=300, consumer_group_prefix="chaos-cluster",
                    collection="C_chaos_cluster_unused")
    stack = Stack(base, SHAPE)
    try:
        stack.up(NODE_KINDS)
    except BaseException:
        stack.down(NODE_KINDS)
        raise
    return ClusterNodes(stack)


def worker_stack(nodes: ClusterNodes, settings: Settings, *, indexers: int = 2, query_workers: int = 2) -> Stack:
    """A launcher for one scenario's workers on ``nodes``: ``settings`` name the scenario's topics,
    collection, consumer groups, first worker ports and home.

    The scenario's home gets the nodes' layout without workers (unless it has one already), so the
    launcher finds every broker and Weaviate node and gives the other workers free ports; a larger
    ``indexers`` later (a joining indexer) keeps the ports of the workers already there.
    """
    if cluster.load(settings.home) is None:
        cluster.save(settings.home, replace(nodes.stack.layout, workers=()))
    shape = replace(SHAPE, indexers=indexers, query_workers=query_workers)
    return Stack(settings, shape)
