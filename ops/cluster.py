"""The shape of the local stack and everything derived from it, as pure functions.

A stack runs N Kafka brokers, N Weaviate nodes and N workers of each kind (``freshet stack up
--brokers 3 --weaviate-nodes 3 --indexers 2 --query-workers 2``; one of each by default). The first
instance of each kind keeps the single-node names and ports (``kafka`` on 9092/9093, ``weaviate`` on
8080/50051, ``indexer`` on 6066, ``query`` on 6067); the others are ``kafka-2``, ``weaviate-2``,
``indexer-2``, ... with ports of their own. The :class:`Layout` (shape, ports, Kafka cluster id) is
saved as ``<home>/cluster.json`` when the stack starts, so later ``status``, ``down`` and ``clean``
see every node without flags, and a restart reuses the same ports (Raft and KRaft remember
addresses).

Ports of the other instances: next to the defaults when the first instance is on its default port
(``kafka-2`` 9094/9095, ``weaviate-2`` 8081/50052 with gossip 7948/7949 and Raft 8302/8303,
``indexer-2`` 6068, ``query-2`` 6069, then +2 or +1 per instance), free ones otherwise (tests).
Weaviate on one host needs its data port one above its gossip port and its Raft RPC port one above
its Raft port (``CLUSTER_IN_LOCALHOST``): ports are allocated in such pairs.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freshet.errors import StackError
from freshet.settings import Settings

if TYPE_CHECKING:
    from ops.secure import Secrets

#: The file under the stack's home that records its layout.
LAYOUT_FILE = "cluster.json"
KINDS = ("kafka", "weaviate", "indexer", "query")
#: Replicas of everything replicated (topics, Kafka internals, the collection): 3 at most.
MAX_REPLICATION = 3


@dataclass(frozen=True)
class Shape:
    """How many of each service the stack runs."""

    brokers: int = 1
    weaviate_nodes: int = 1
    indexers: int = 1
    query_workers: int = 1
    secure: bool = False
    """TLS, SCRAM users and ACLs on Kafka (ops/secure.py); fixed when the brokers' data is formatted."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "secure" and not 1 <= value <= 9:
                raise StackError(f"{name}={value}: the local stack runs 1 to 9 of each service", service="stack")

    def count(self, kind: str) -> int:
        return {"kafka": self.brokers, "weaviate": self.weaviate_nodes, "indexer": self.indexers,
                "query": self.query_workers}[kind]

    @property
    def replication(self) -> int:
        """Replication factor of topics and Kafka internals."""
        return min(MAX_REPLICATION, self.brokers)

    @property
    def min_insync(self) -> int:
        """``min.insync.replicas``: 2 once there are 3 replicas (one broker may be down), else 1."""
        return 2 if self.brokers >= 3 else 1

    @property
    def weaviate_replication(self) -> int:
        return min(MAX_REPLICATION, self.weaviate_nodes)


def instance_name(kind: str, index: int) -> str:
    """``kafka`` for the first broker, ``kafka-2`` for the second, and so on for every kind."""
    return kind if index == 1 else f"{kind}-{index}"


@dataclass(frozen=True)
class KafkaNode:
    index: int
    port: int
    controller_port: int
    tls_port: int = 0
    """A secured broker's mutual-TLS client listener (0: none; ops/secure.py)."""

    @property
    def name(self) -> str:
        return instance_name("kafka", self.index)


@dataclass(frozen=True)
class WeaviateNode:
    index: int
    http_port: int
    grpc_port: int
    gossip_port: int
    data_port: int
    raft_port: int
    raft_rpc_port: int

    @property
    def name(self) -> str:
        return instance_name("weaviate", self.index)

    @property
    def hostname(self) -> str:
        """``CLUSTER_HOSTNAME``: node1, node2, ... (kept across restarts: Raft knows nodes by it)."""
        return f"node{self.index}"


@dataclass(frozen=True)
class Worker:
    role: str
    index: int
    web_port: int

    @property
    def name(self) -> str:
        return instance_name(self.role, self.index)


@dataclass(frozen=True)
class Layout:
    """Every instance of the stack with its ports, and the Kafka cluster id (saved as cluster.json)."""

    shape: Shape
    cluster_id: str
    kafka: tuple[KafkaNode, ...]
    weaviate: tuple[WeaviateNode, ...]
    workers: tuple[Worker, ...] = field(default=())

    def names(self, kind: str) -> list[str]:
        if kind == "kafka":
            return [n.name for n in self.kafka]
        if kind == "weaviate":
            return [n.name for n in self.weaviate]
        return [w.name for w in self.workers if w.role == kind]

    def all_names(self) -> list[str]:
        """Every service, in start order: brokers, Weaviate nodes, indexers, query workers."""
        return [name for kind in KINDS for name in self.names(kind)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Layout:
        raw = json.loads(text)
        return cls(shape=Shape(**raw["shape"]), cluster_id=raw["cluster_id"],
                   kafka=tuple(KafkaNode(**n) for n in raw["kafka"]),
                   weaviate=tuple(WeaviateNode(**n) for n in raw["weaviate"]),
                   workers=tuple(Worker(**w) for w in raw.get("workers", [])))


def load(home: Path) -> Layout | None:
    path = home / LAYOUT_FILE
    try:
        return Layout.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{path} is not a stack layout ({exc}); remove it, or run `make clean`",
                         service="stack") from exc


def save(home: Path, layout: Layout) -> None:
    """Write ``cluster.json`` atomically; a temporary file of its own per call, since two stacks of one
    home may start at once (the chaos tier starts the indexer and the query worker side by side)."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{LAYOUT_FILE}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(layout.to_json(), encoding="utf-8")
    tmp.replace(home / LAYOUT_FILE)


@dataclass(frozen=True)
class Ports:
    """Where new ports come from: ``free()`` one free port, ``free_pair()`` the lower of two
    consecutive free ones, ``taken(port)`` whether something listens there."""

    free: Callable[[], int]
    free_pair: Callable[[], int]
    taken: Callable[[int], bool]
    given: set[int] = field(default_factory=set)
    """Ports this plan uses already: ``free()`` knows only what listens now, so two picks made
    before any node started could coincide (CI: weaviate-2 found its port "taken by another process")."""

    def reserve(self, *ports: int) -> None:
        self.given.update(ports)

    def one(self) -> int:
        for _ in range(1000):
            port = self.free()
            if port not in self.given:
                self.given.add(port)
                return port
        raise StackError("no free port left that this layout does not use already", service="stack")

    def pair(self) -> int:
        for _ in range(1000):
            port = self.free_pair()
            if port not in self.given and port + 1 not in self.given:
                self.given.update((port, port + 1))
                return port
        raise StackError("no two consecutive free ports left that this layout does not use already",
                         service="stack")

    def near(self, default_first: bool, port: int) -> int:
        if default_first and port not in self.given and not self.taken(port):
            self.given.add(port)
            return port
        return self.one()

    def near_pair(self, default_first: bool, port: int) -> int:
        if default_first and not ({port, port + 1} & self.given) and not (self.taken(port) or self.taken(port + 1)):
            self.given.update((port, port + 1))
            return port
        return self.pair()


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting with
    ``-`` (one id in 64 would, and the storage tool's argument parser then reads it as an option:
    Kafka's own ``Uuid.randomUuid`` draws again for the same reason)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def plan(s: Settings, shape: Shape, saved: Layout | None, ports: Ports, *,
         weaviate1_internal: tuple[int, int, int, int] | None = None) -> Layout:
    """The layout of ``shape``: first instances on the settings' ports, the others on the ports
    ``saved`` gave them, new ones from ``ports``. ``weaviate1_internal`` overrides the first Weaviate
    node's (gossip, data, Raft, Raft RPC) ports (a single-node home from before cluster.json)."""
    old_k = {n.index: n for n in saved.kafka} if saved else {}
    old_w = {n.index: n for n in saved.weaviate} if saved else {}
    old_workers = {(w.role, w.index): w for w in saved.workers} if saved else {}

    ports.reserve(s.kafka_port, s.kafka_controller_port, s.weaviate_http_port, s.weaviate_grpc_port,
                  s.indexer_web_port, s.query_web_port)
    if saved:
        ports.reserve(*(p for n in saved.kafka for p in (n.port, n.controller_port, n.tls_port) if p),
                      *(p for n in saved.weaviate for p in (n.http_port, n.grpc_port, n.gossip_port, n.data_port,
                                                              n.raft_port, n.raft_rpc_port)),
                      *(w.web_port for w in saved.workers))
    if weaviate1_internal is not None:
        ports.reserve(*weaviate1_internal)
    kafka = [KafkaNode(1, s.kafka_port, s.kafka_controller_port)]
    near_k = s.kafka_port == 9092
    for i in range(2, shape.brokers + 1):
        kafka.append(old_k.get(i) or KafkaNode(i, ports.near(near_k, 9092 + 2 * (i - 1)),
                                               ports.near(near_k, 9093 + 2 * (i - 1))))
    if shape.secure:  # each broker's mutual-TLS listener: 9192, 9194, ... by default, kept once given
        def tls(n: KafkaNode) -> int:
            kept = old_k[n.index].tls_port if n.index in old_k else 0
            return kept or ports.near(near_k, 9192 + 2 * (n.index - 1))

        kafka = [replace(n, tls_port=tls(n)) for n in kafka]

    default_w = s.weaviate_http_port == 8080
    if default_w:
        first = (7946, 7947, 8300, 8301)
        ports.reserve(*first)
    elif weaviate1_internal is not None:
        first = weaviate1_internal
    elif 1 in old_w:
        o = old_w[1]
        first = (o.gossip_port, o.data_port, o.raft_port, o.raft_rpc_port)
    else:
        gossip, raft = ports.pair(), ports.pair()
        first = (gossip, gossip + 1, raft, raft + 1)
    weaviate = [WeaviateNode(1, s.weaviate_http_port, s.weaviate_grpc_port, *first)]
    for i in range(2, shape.weaviate_nodes + 1):
        if i in old_w:
            weaviate.append(old_w[i])
            continue
        gossip = ports.near_pair(default_w, 7946 + 2 * (i - 1))
        raft = ports.near_pair(default_w, 8300 + 2 * (i - 1))
        weaviate.append(WeaviateNode(i, ports.near(default_w, 8080 + i - 1), ports.near(default_w, 50051 + i - 1),
                                     gossip, gossip + 1, raft, raft + 1))

    workers: list[Worker] = []
    for role, first_port, count in (("indexer", s.indexer_web_port, shape.indexers),
                                    ("query", s.query_web_port, shape.query_workers)):
        workers.append(Worker(role, 1, first_port))
        near = first_port in (6066, 6067)
        for i in range(2, count + 1):
            workers.append(old_workers.get((role, i)) or Worker(role, i, ports.near(near, first_port + 2 * (i - 1))))
    cluster_id = saved.cluster_id if saved else new_cluster_id()
    return Layout(shape, cluster_id, tuple(kafka), tuple(weaviate), tuple(workers))


def cluster_settings(s: Settings, layout: Layout) -> Settings:
    """The settings every process of a multi-node stack uses: every broker in the bootstrap list and
    the cluster's replication. A single-node stack keeps ``s`` exactly as it is."""
    shape = layout.shape
    updates: dict[str, object] = {}
    if shape.secure:
        from ops import secure

        found = secure.load(s.home)
        if found is not None:  # the admin's credentials fill what was not set by hand
            defaults = Settings.model_fields
            for name, value in secure.client_settings(found, "admin").items():
                current, default = getattr(s, name), defaults[name].default
                if _plain(current) == _plain(default):
                    updates[name] = value
    if shape.brokers > 1:
        updates["kafka_bootstrap"] = ",".join(f"{s.kafka_host}:{n.port}" for n in layout.kafka)
        updates["topic_replication"] = shape.replication
    if shape.weaviate_nodes > 1:
        updates["weaviate_replication_factor"] = shape.weaviate_replication
    if not updates:
        return s
    return Settings(**{**s.model_dump(), **updates})


def _plain(value: object) -> object:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def worker_env(s: Settings, layout: Layout, worker: Worker) -> dict[str, str]:
    """The ``FRESHET_*`` variables of one spawned worker: the cluster's settings, its own web port,
    and a Weaviate node of its own (worker k talks to node ((k - 1) mod N) + 1), so the load spreads
    and one node's loss does not stop every worker, with the other nodes after it as its failover."""
    env = cluster_settings(s, layout).as_env()
    if layout.shape.secure and not s.kafka_sasl_username:  # each worker as its own Kafka user
        from ops import secure

        found = secure.load(s.home)
        if found is not None:
            env["FRESHET_KAFKA_SASL_USERNAME"] = worker.role
            env["FRESHET_KAFKA_SASL_PASSWORD"] = found.password(worker.role)
            env["FRESHET_WEAVIATE_API_KEY"] = found.weaviate_key(worker.role)
    env[f"FRESHET_{worker.role.upper()}_WEB_PORT"] = str(worker.web_port)
    env["FRESHET_WORKER_INSTANCE"] = worker.name
    first = (worker.index - 1) % len(layout.weaviate)
    node = layout.weaviate[first]
    env["FRESHET_WEAVIATE_HTTP_PORT"] = str(node.http_port)
    env["FRESHET_WEAVIATE_GRPC_PORT"] = str(node.grpc_port)
    others = [layout.weaviate[(first + k) % len(layout.weaviate)] for k in range(1, len(layout.weaviate))]
    if others:  # the next nodes in turn, should its own stop answering
        env["FRESHET_WEAVIATE_FAILOVER"] = ",".join(f"{s.weaviate_host}:{n.http_port}:{n.grpc_port}" for n in others)
    if worker.role == "indexer" and worker.index > 1:
        env["FRESHET_INDEXER_URL"] = f"http://127.0.0.1:{worker.web_port}"
    return env


def kafka_properties(s: Settings, layout: Layout, node: KafkaNode, data: Path, secrets: Secrets | None = None) -> str:
    """``server.properties`` of broker ``node``: a combined broker and KRaft controller, every node a
    voter, replication of internals and defaults as the cluster's size allows; with ``secrets``, TLS,
    SCRAM and the authorizer (ops/secure.py)."""
    host, shape = s.kafka_host, layout.shape
    voters = ",".join(f"{n.index}@{host}:{n.controller_port}" for n in layout.kafka)
    if secrets is not None:
        from ops import secure

        listeners = secure.listener_properties(secrets, host, node.port, node.controller_port, node.tls_port)
    else:
        listeners = [
            f"listeners=PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{node.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node.index}",
        f"controller.quorum.voters={voters}",
        *listeners,
        f"log.dirs={data}",
        f"num.partitions={s.topic_partitions}",
        f"default.replication.factor={shape.replication}",
        f"min.insync.replicas={shape.min_insync}",
        f"offsets.topic.replication.factor={shape.replication}",
        "offsets.topic.num.partitions=4",
        f"transaction.state.log.replication.factor={shape.replication}",
        f"transaction.state.log.min.isr={shape.min_insync}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        # a killed broker's partitions get new leaders once the controller fences it: after 2 s of
        # missed heartbeats (every 0.5 s), not the default 9 s; searches and writes to them wait
        # meanwhile, and a search's deadline is a few seconds (4 s fenced: 6 late or lost of 85)
        *(["broker.session.timeout.ms=2000", "broker.heartbeat.interval.ms=500"] if shape.brokers > 1 else []),
        "",
    ])


def weaviate_env(s: Settings, layout: Layout, node: WeaviateNode, data: Path,
                 secrets: Secrets | None = None) -> dict[str, str]:
    """The environment of Weaviate node ``node`` (without the inherited process environment).

    Several nodes on one host need ``CLUSTER_IN_LOCALHOST``: Raft then takes each node's Raft port
    from ``RAFT_JOIN`` (``node2:8302``) and reaches its RPC server one port above it.
    """
    nodes = layout.weaviate
    env = {
        "PERSISTENCE_DATA_PATH": str(data),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_API_BASED_MODULES": "false",
        "CLUSTER_HOSTNAME": node.hostname,
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(node.gossip_port),
        "CLUSTER_DATA_BIND_PORT": str(node.data_port),
        "RAFT_PORT": str(node.raft_port),
        "RAFT_INTERNAL_RPC_PORT": str(node.raft_rpc_port),
        "RAFT_BOOTSTRAP_EXPECT": str(len(nodes)),
        "GRPC_PORT": str(node.grpc_port),
        "GO_PROFILING_DISABLE": "true",
        "DISABLE_TELEMETRY": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        "LOG_LEVEL": "info",
    }
    if len(nodes) == 1:
        env["RAFT_JOIN"] = node.hostname
    else:
        env["RAFT_JOIN"] = ",".join(f"{n.hostname}:{n.raft_port}" for n in nodes)
        env["CLUSTER_IN_LOCALHOST"] = "true"
        if node.index != 1:
            env["CLUSTER_JOIN"] = f"127.0.0.1:{nodes[0].gossip_port}"
    if secrets is not None:
        from ops import secure

        env.update(secure.weaviate_env(secrets))
    return env


def requested_shape(home: Path, **given: int | bool | None) -> Shape:
    """The shape the home was last started with (or one of each), with the counts ``given`` (None:
    keep) replaced."""
    saved = load(home)
    base = saved.shape if saved else Shape()
    fields: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    return replace(base, **fields)


def check_reshape(home: Path, before: Shape, now: Shape) -> None:
    """Refuse to change the number of brokers or Weaviate nodes of a home that holds their data: a
    KRaft quorum and a Raft cluster are not re-shaped by restarting them with other voters."""
    weaviate_data = home / "weaviate" / "data"
    if before.secure != now.secure and (home / "kafka" / "data" / "meta.properties").exists():
        held, asked = ("secured", "plain") if before.secure else ("plain", "secured")
        raise StackError(
            f"the stack in {home} holds the data of a {held} Kafka, so it cannot start {asked}: its users are made "
            f"when the data is formatted. Start it as it was (`make up{' SECURE=1' if before.secure else ''}`), "
            f"give it a home of its own (FRESHET_HOME=...), or wipe this one first with `make clean`", service="stack")
    for what, was, wanted, holds_data in (
        ("broker(s)", before.brokers, now.brokers, (home / "kafka" / "data" / "meta.properties").exists()),
        ("Weaviate node(s)", before.weaviate_nodes, now.weaviate_nodes,
         weaviate_data.is_dir() and any(weaviate_data.iterdir())),
    ):
        if was != wanted and holds_data:
            raise StackError(
                f"the stack in {home} holds the data of {was} {what}, so it cannot start {wanted}: start it as it "
                f"was (a plain `make up`), give the cluster a home of its own (FRESHET_HOME=...), or wipe this one "
                f"first with `make clean` (freshet stack clean)", service="stack")


def legacy_weaviate_ports(home: Path) -> tuple[int, int, int, int] | None:
    """The (gossip, data, Raft, Raft RPC) ports a single Weaviate node on other than the default ports
    was given before cluster.json existed (``weaviate/cluster-ports.json``): Raft keeps its address."""
    path = home / "weaviate" / "cluster-ports.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    gossip, data, raft, rpc = (int(raw[n]) for n in ("CLUSTER_GOSSIP_BIND_PORT", "CLUSTER_DATA_BIND_PORT",
                                                      "RAFT_PORT", "RAFT_INTERNAL_RPC_PORT"))
    return gossip, data, raft, rpc
