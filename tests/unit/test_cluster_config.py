"""The local cluster's pure parts: names, ports, server.properties and Weaviate's environment per node."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from freshet.errors import StackError
from freshet.settings import Settings
from ops import cluster
from ops.cluster import Layout, Shape

CLUSTER = Shape(brokers=3, weaviate_nodes=3, indexers=2, query_workers=2)


def _ports(taken: frozenset[int] = frozenset()) -> cluster.Ports:
    counter = itertools.count(40000, 2)
    return cluster.Ports(free=lambda: next(counter), free_pair=lambda: next(counter), taken=lambda p: p in taken)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, kafka_bootstrap="")


def test_the_first_instances_keep_the_default_ports_and_the_others_sit_next_to_them(settings: Settings) -> None:
    layout = cluster.plan(settings, CLUSTER, None, _ports())
    assert layout.all_names() == ["kafka", "kafka-2", "kafka-3", "weaviate", "weaviate-2", "weaviate-3",
                                  "indexer", "indexer-2", "query", "query-2"]
    assert [(n.port, n.controller_port) for n in layout.kafka] == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert [(n.http_port, n.grpc_port, n.gossip_port, n.data_port, n.raft_port, n.raft_rpc_port)
            for n in layout.weaviate] == [(8080, 50051, 7946, 7947, 8300, 8301), (8081, 50052, 7948, 7949, 8302, 8303),
                                          (8082, 50053, 7950, 7951, 8304, 8305)]
    assert [(w.name, w.web_port) for w in layout.workers] == [("indexer", 6066), ("indexer-2", 6068),
                                                              ("query", 6067), ("query-2", 6069)]


def test_a_taken_neighbour_port_is_replaced_by_a_free_one(settings: Settings) -> None:
    layout = cluster.plan(settings, CLUSTER, None, _ports(taken=frozenset({8081, 9094})))
    assert layout.weaviate[1].http_port >= 40000
    assert layout.kafka[1].port >= 40000 and layout.kafka[1].controller_port == 9095


def test_a_stack_on_other_ports_gets_free_ports_in_weaviate_pairs(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, kafka_port=1111, weaviate_http_port=2222, indexer_web_port=3333, query_web_port=4444)
    layout = cluster.plan(s, CLUSTER, None, _ports())
    ports = [p for n in layout.weaviate for p in (n.gossip_port, n.raft_port)] + [layout.kafka[2].port]
    assert all(p >= 40000 for p in ports)
    assert all(n.data_port == n.gossip_port + 1 and n.raft_rpc_port == n.raft_port + 1 for n in layout.weaviate)
    assert layout.kafka[0].port == 1111 and layout.weaviate[0].http_port == 2222


def test_a_saved_layout_keeps_its_ports_and_cluster_id_and_round_trips(settings: Settings) -> None:
    first = cluster.plan(settings, CLUSTER, None, _ports())
    cluster.save(settings.home, first)
    loaded = cluster.load(settings.home)
    assert loaded == first
    # our own nodes listen on their ports now: they are kept all the same
    again = cluster.plan(settings, CLUSTER, loaded, _ports(taken=frozenset({8081, 9094, 6068})))
    assert again == first
    grown = cluster.plan(settings, Shape(3, 3, 3, 2), loaded, _ports())
    assert grown.cluster_id == first.cluster_id and [w.name for w in grown.workers][:3] == [
        "indexer", "indexer-2", "indexer-3"]


def test_requested_shape_changes_only_what_is_given(settings: Settings) -> None:
    cluster.save(settings.home, cluster.plan(settings, CLUSTER, None, _ports()))
    assert cluster.requested_shape(settings.home, brokers=None, indexers=4) == Shape(3, 3, 4, 2)
    assert cluster.requested_shape(settings.home / "fresh") == Shape()
    with pytest.raises(StackError, match="1 to 9"):
        Shape(brokers=0)


def test_server_properties_of_broker_2_of_3(settings: Settings, tmp_path: Path) -> None:
    layout = cluster.plan(settings, CLUSTER, None, _ports())
    props = _props(cluster.kafka_properties(settings, layout, layout.kafka[1], tmp_path / "data"))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9094"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["log.dirs"] == str(tmp_path / "data")
    # a killed broker loses its leaderships after 4 s, not 9 (cluster-node-kills: searches waited out 9 s)
    assert (props["broker.session.timeout.ms"], props["broker.heartbeat.interval.ms"]) == ("2000", "500")


@pytest.mark.parametrize(("brokers", "replication", "min_isr"), [(1, "1", "1"), (2, "2", "1"), (4, "3", "2")])
def test_replication_follows_the_number_of_brokers(settings: Settings, tmp_path: Path, brokers: int,
                                                   replication: str, min_isr: str) -> None:
    layout = cluster.plan(settings, Shape(brokers=brokers), None, _ports())
    props = _props(cluster.kafka_properties(settings, layout, layout.kafka[0], tmp_path))
    assert (props["offsets.topic.replication.factor"], props["min.insync.replicas"]) == (replication, min_isr)
    assert props["controller.quorum.voters"].count("@") == brokers
    assert ("broker.session.timeout.ms" in props) == (brokers > 1)


def test_weaviate_env_of_node_2_of_3(settings: Settings, tmp_path: Path) -> None:
    layout = cluster.plan(settings, CLUSTER, None, _ports())
    env = cluster.weaviate_env(settings, layout, layout.weaviate[1], tmp_path)
    assert env["CLUSTER_HOSTNAME"] == "node2"
    assert env["CLUSTER_JOIN"] == "127.0.0.1:7946"
    assert env["CLUSTER_IN_LOCALHOST"] == "true"
    assert env["RAFT_JOIN"] == "node1:8300,node2:8302,node3:8304"
    assert env["RAFT_BOOTSTRAP_EXPECT"] == "3"
    assert (env["CLUSTER_GOSSIP_BIND_PORT"], env["CLUSTER_DATA_BIND_PORT"]) == ("7948", "7949")
    assert (env["RAFT_PORT"], env["RAFT_INTERNAL_RPC_PORT"], env["GRPC_PORT"]) == ("8302", "8303", "50052")
    first = cluster.weaviate_env(settings, layout, layout.weaviate[0], tmp_path)
    assert "CLUSTER_JOIN" not in first


def test_a_single_weaviate_node_is_configured_as_before(settings: Settings, tmp_path: Path) -> None:
    layout = cluster.plan(settings, Shape(), None, _ports())
    env = cluster.weaviate_env(settings, layout, layout.weaviate[0], tmp_path)
    assert (env["RAFT_JOIN"], env["RAFT_BOOTSTRAP_EXPECT"], env["CLUSTER_GOSSIP_BIND_PORT"]) == ("node1", "1", "7946")
    assert "CLUSTER_IN_LOCALHOST" not in env and "CLUSTER_JOIN" not in env


def test_every_process_of_a_cluster_gets_every_broker_and_the_cluster_replication(settings: Settings) -> None:
    layout = cluster.plan(settings, CLUSTER, None, _ports())
    s = cluster.cluster_settings(settings, layout)
    assert s.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert (s.topic_replication, s.weaviate_replication_factor) == (3, 3)
    single = cluster.plan(settings, Shape(), None, _ports())
    assert cluster.cluster_settings(settings, single) is settings


def test_a_worker_gets_its_own_web_port_and_a_weaviate_node_of_its_own(settings: Settings) -> None:
    layout: Layout = cluster.plan(settings, CLUSTER, None, _ports())
    second = next(w for w in layout.workers if w.name == "indexer-2")
    env = cluster.worker_env(settings, layout, second)
    assert env["FRESHET_INDEXER_WEB_PORT"] == "6068"
    assert env["FRESHET_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert (env["FRESHET_WEAVIATE_HTTP_PORT"], env["FRESHET_WEAVIATE_GRPC_PORT"]) == ("8081", "50052")
    # the other nodes in turn after its own: a killed node leaves no worker without a store
    failover = Settings(**{k.removeprefix("FRESHET_").lower(): v for k, v in env.items()}).weaviate_nodes
    assert [n[1] for n in failover] == [8081, layout.weaviate[2].http_port, 8080]
    assert len({n[1:] for n in failover}) == 3
    assert (env["FRESHET_TOPIC_REPLICATION"], env["FRESHET_WEAVIATE_REPLICATION_FACTOR"]) == ("3", "3")
    query = next(w for w in layout.workers if w.name == "query")
    assert cluster.worker_env(settings, layout, query)["FRESHET_QUERY_WEB_PORT"] == "6067"


def test_the_workers_producer_is_idempotent_with_acks_all(settings: Settings) -> None:
    from streams.app import create_app

    app, _ = create_app(settings, "indexer")
    producer = app.producer
    assert producer._settings_extra()["enable_idempotence"] is True
    assert producer._settings_default()["acks"] == -1


def test_brokers_and_weaviate_nodes_keep_their_number_once_they_hold_data(tmp_path: Path) -> None:
    cluster.check_reshape(tmp_path, Shape(), CLUSTER)  # nothing there yet: any shape
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("cluster.id=x\n")
    cluster.check_reshape(tmp_path, Shape(), Shape(indexers=3, query_workers=2))  # workers may change
    with pytest.raises(StackError, match="holds the data of 1 broker"):
        cluster.check_reshape(tmp_path, Shape(), CLUSTER)


def test_new_cluster_ids_never_read_as_an_option() -> None:
    # one urlsafe-base64 id in 64 starts with '-', which kafka-storage's parser took for an option
    # (CI: "argument --cluster-id/-t: expected one argument"); 5,000 draws miss it with p < 1e-34
    ids = {cluster.new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)


def test_failover_nodes_are_parsed_and_bad_ones_refused() -> None:
    s = Settings(weaviate_failover="10.0.0.2:8080:50051, wv-3.svc:18080:15051")
    assert s.weaviate_nodes == [("127.0.0.1", 8080, 50051), ("10.0.0.2", 8080, 50051), ("wv-3.svc", 18080, 15051)]
    for bad in ("10.0.0.2:8080", "10.0.0.2:http:50051", ":8080:50051", "h:8080:70000"):
        with pytest.raises(ValueError, match="host:http_port:grpc_port"):
            Settings(weaviate_failover=bad)


def test_a_plan_never_gives_one_port_twice(settings: Settings) -> None:
    # free() only knows what listens now: before any node starts it may return a port it returned
    # already (CI: weaviate-2's port "taken by another process", by another node of the same plan)
    picks = iter([41000, 41004, 41004, 41002, 41006, 41004, 41008, 41006, *range(41010, 41200, 2)])
    ports = cluster.Ports(free=lambda: next(picks), free_pair=lambda: next(picks), taken=lambda p: True)
    custom = Settings(**{**settings.model_dump(), "kafka_port": 41000, "weaviate_http_port": 41002})
    layout = cluster.plan(custom, CLUSTER, None, ports)
    used = [p for n in layout.kafka for p in (n.port, n.controller_port)]
    used += [p for n in layout.weaviate for p in (n.http_port, n.grpc_port, n.gossip_port, n.data_port, n.raft_port,
                                                   n.raft_rpc_port)]
    used += [w.web_port for w in layout.workers]
    assert len(used) == len(set(used)), sorted(p for p in used if used.count(p) > 1)


def test_saves_of_one_home_from_several_threads_never_fail(settings: Settings) -> None:
    # CI: the chaos tier starts the indexer and the query worker of one home side by side; both
    # saved cluster.json through the same temporary file, and one found it gone (FileNotFoundError)
    import concurrent.futures

    layout = cluster.plan(settings, CLUSTER, None, _ports())

    def many() -> None:
        for _ in range(200):
            cluster.save(settings.home, layout)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for fut in [pool.submit(many) for _ in range(4)]:
            fut.result()
    assert cluster.load(settings.home) == layout
    assert [p.name for p in settings.home.iterdir() if p.name.endswith(".tmp")] == []
