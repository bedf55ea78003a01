"""The local cluster: 3 KRaft brokers, 3 Weaviate nodes, 2 indexers and 2 query workers, started by
the project's launcher on a home and ports of its own (never the shared stack's), fed and searched
over Kafka, then stopped. One module-scoped cluster; about two minutes on a 2-core machine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from weaviate.classes.config import ConsistencyLevel

from freshet.cli import main
from freshet.client import SearchClient
from freshet.settings import Settings
from ops import cluster, procs
from ops.cluster import Shape
from ops.stack import Stack
from schemas.change import ChangeEvent
from tests.integration.helpers import publish_and_wait
from workers.weaviate_store import sync_client

pytestmark = pytest.mark.integration

SHAPE = Shape(brokers=3, weaviate_nodes=3, indexers=2, query_workers=2)
DOCS = [
    ChangeEvent(doc_id=f"cluster/{i}.md", op="upsert", version=1,
                content=f"# Note {i}\n\nReplicated note number {i} about {topic}, kept on three brokers and "
                        f"three Weaviate nodes so that one node may fail without losing it.\n")
    for i, topic in enumerate(["glaciers", "volcanoes", "lighthouses", "beehives", "submarines", "orchards"])
]


def _free_settings(home: Path) -> Settings:
    """Settings whose first broker, first Weaviate node and workers are on free ports: the other
    nodes then get free ports too (ops.cluster.plan)."""
    free = procs.free_port
    return Settings(home=home, kafka_port=free(), kafka_controller_port=free(), weaviate_http_port=free(),
                    weaviate_grpc_port=free(), indexer_web_port=free(), query_web_port=free(), indexer_url="",
                    kafka_bootstrap="", topic_partitions=4, index_linger_seconds=0.2, start_timeout_seconds=240,
                    delete_grace_seconds=0)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Settings]]:
    base = _free_settings(tmp_path_factory.mktemp("cluster"))
    stack = Stack(base, SHAPE)
    started = time.monotonic()
    try:
        stack.up()
        print(f"cluster of {SHAPE} up in {time.monotonic() - started:.0f}s")  # noqa: T201 - shown with -s
        yield stack, base
    finally:
        stack.down()
        stack.down()  # a second stop finds nothing left: every pid file is gone


def test_every_node_and_worker_is_healthy_and_listed(running: tuple[Stack, Settings]) -> None:
    stack, base = running
    statuses = stack.status()
    assert [s.service for s in statuses] == ["kafka", "kafka-2", "kafka-3", "weaviate", "weaviate-2", "weaviate-3",
                                             "indexer", "indexer-2", "query", "query-2"]
    assert all(s.healthy for s in statuses), [s for s in statuses if not s.healthy]
    # The CLI finds the same ten from the saved shape, without flags.
    res = CliRunner().invoke(main, ["stack", "status", "--check"], env={**os.environ, **base.as_env()})
    assert res.exit_code == 0, res.output
    assert sum(line.startswith("up") for line in res.output.splitlines()) == 10, res.output


def test_first_instances_keep_the_settings_ports_and_the_others_differ(running: tuple[Stack, Settings]) -> None:
    stack, base = running
    layout = cluster.load(base.home)
    assert layout is not None and layout.shape == SHAPE
    assert (layout.kafka[0].port, layout.weaviate[0].http_port) == (base.kafka_port, base.weaviate_http_port)
    ports = [p for n in layout.kafka for p in (n.port, n.controller_port)]
    ports += [p for n in layout.weaviate for p in (n.http_port, n.grpc_port, n.gossip_port, n.data_port,
                                                   n.raft_port, n.raft_rpc_port)]
    ports += [w.web_port for w in layout.workers]
    assert len(set(ports)) == len(ports)
    assert not {9092, 9093, 8080, 50051, 7946, 7947, 8300, 8301, 6066, 6067} & set(ports)
    assert stack.s.bootstrap_servers.count(",") == 2


def test_topics_are_replicated_three_times_with_two_in_sync(running: tuple[Stack, Settings]) -> None:
    stack, _ = running
    admin = KafkaAdminClient(bootstrap_servers=stack.s.bootstrap_servers.split(","))
    try:
        for topic in admin.describe_topics(stack.s.topics()):
            assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {3}, topic
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, stack.s.topic_changes)],
                                         config_filter="all")
        assert configs["topic"][stack.s.topic_changes]["min.insync.replicas"]["value"] == "2"
        assert admin.describe_cluster()["brokers"].__len__() == 3
    finally:
        admin.close()


def test_weaviate_has_three_nodes_and_a_collection_replicated_three_times(running: tuple[Stack, Settings]) -> None:
    stack, _ = running
    nodes = httpx.get(f"{stack.s.weaviate_url}/v1/nodes", timeout=10).json()["nodes"]
    assert sorted(n["name"] for n in nodes) == ["node1", "node2", "node3"]
    assert {n["status"] for n in nodes} == {"HEALTHY"}
    client = sync_client(stack.s.weaviate_host, stack.s.weaviate_http_port, stack.s.weaviate_grpc_port)
    try:
        assert client.collections.use(stack.s.collection).config.get().replication_config.factor == 3
    finally:
        client.close()


def test_documents_are_applied_and_searchable_on_the_cluster(running: tuple[Stack, Settings]) -> None:
    stack, _ = running
    s = stack.s
    publish_and_wait(s, DOCS, timeout=180)
    applied = 0
    for w in stack.layout.workers:
        if w.role == "indexer":
            applied += httpx.get(f"http://127.0.0.1:{w.web_port}/stats", timeout=10).json()["events_applied"]
    assert applied >= len(DOCS)
    # Any node answers for the whole collection (each holds a replica of every shard).
    for node in stack.layout.weaviate:
        client = sync_client(s.weaviate_host, node.http_port, node.grpc_port)
        try:
            coll = client.collections.use(s.collection).with_consistency_level(ConsistencyLevel.QUORUM)
            docs = {o.properties["doc_id"] for o in coll.query.fetch_objects(limit=100).objects}
            assert docs == {d.doc_id for d in DOCS}, node
        finally:
            client.close()
    search = SearchClient(s.bootstrap_servers, request_topic=s.topic_requests, reply_topic=s.topic_replies,
                          timeout=60)
    try:
        for i, topic in ((0, "glaciers"), (4, "submarines")):
            reply = search.search(f"note about {topic}", mode="hybrid", top_k=3)
            assert reply.status == "ok", reply.error
            assert reply.hits[0].doc_id == f"cluster/{i}.md"
    finally:
        search.close()
