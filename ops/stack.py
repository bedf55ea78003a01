"""The local stack: Kafka (KRaft, single node), Weaviate, and the indexer and query workers.

Everything lives under ``settings.home`` (default ``./.freshet``)::

    .freshet/
      kafka/      server.properties and the broker's log segments
      weaviate/   Weaviate's data
      workers/    Faust state of each worker
      logs/       kafka.log, weaviate.log, indexer.log, query.log
      run/        one pid file per running service
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from freshet.errors import StackError, TransientError
from freshet.settings import KAFKA_VERSION, WEAVIATE_VERSION, Settings
from ops import install, procs
from workers.kafka_admin import broker_info, ensure_topics

log = structlog.get_logger(__name__)

SERVICES = ("kafka", "weaviate", "indexer", "query")
LOG4J = Path(__file__).resolve().parent / "kafka" / "log4j.properties"


@dataclass(frozen=True)
class Status:
    service: str
    running: bool
    healthy: bool
    detail: str


def isolated(base: Settings, tag: str, home: Path, **overrides: object) -> Settings:
    """Settings of a pipeline of its own on ``base``'s Kafka and Weaviate: topics, collection,
    consumer groups and worker ports that nothing else uses (tests and benchmarks)."""
    fields = base.model_dump()
    fields.update(
        topic_changes=f"{tag}.changes", topic_requests=f"{tag}.requests", topic_replies=f"{tag}.replies",
        topic_applied=f"{tag}.applied", topic_dead_letter=f"{tag}.deadletter", topic_metrics=f"{tag}.metrics",
        collection="C_" + tag.replace("-", "_").replace(".", "_"), consumer_group_prefix=tag,
        indexer_web_port=procs.free_port(), query_web_port=procs.free_port(), indexer_url="", home=home,
    )
    fields.update(overrides)
    return Settings(**fields)


def drop_pipeline(s: Settings) -> None:
    """Delete an isolated pipeline's collection and every topic of its consumer-group prefix
    (its own topics and the Faust internals: state changelog, leader topic)."""
    from kafka import KafkaAdminClient

    from workers.weaviate_store import sync_client

    client = sync_client(s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    try:
        client.collections.delete(s.collection)
    finally:
        client.close()
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers.split(","))
    try:
        ours = [t for t in admin.list_topics() if t.startswith(s.consumer_group_prefix + ".")
                or t.startswith(s.consumer_group_prefix + "-")]
        if ours:
            admin.delete_topics(ours)
    finally:
        admin.close()


class Stack:
    """Starts, stops and inspects the local services described by one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.home = settings.home

    def log_path(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"

    def _pidfile(self, service: str) -> Path:
        return self.home / "run" / f"{service}.pid"

    # --- lifecycle ------------------------------------------------------------------------
    def up(self, services: Iterable[str] = SERVICES) -> None:
        """Install what is missing, then start each service not already running; wait for health."""
        wanted = [s for s in SERVICES if s in set(services)]
        starters: dict[str, Callable[[], None]] = {
            "kafka": self._start_kafka, "weaviate": self._start_weaviate,
            "indexer": lambda: self._start_worker("indexer"), "query": lambda: self._start_worker("query"),
        }
        for service in wanted:
            if self.healthy(service):
                log.info("already_running", service=service)
                continue
            starters[service]()
        if "kafka" in wanted:
            ensure_topics(self.s.bootstrap_servers, self.s.topics(), partitions=self.s.topic_partitions,
                          replication=self.s.topic_replication,
                          compacted=[self.s.topic_applied])

    def down(self, services: Iterable[str] = SERVICES) -> None:
        """Stop services, workers first (they drain before their broker and store go)."""
        for service in reversed([s for s in SERVICES if s in set(services)]):
            if procs.stop(self._pidfile(service), timeout=45 if service == "kafka" else 30):
                log.info("stopped", service=service)

    def clean(self) -> None:
        """Stop everything and wipe every data directory, log and pid file."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)
        log.info("wiped", path=str(self.home))

    def status(self) -> list[Status]:
        return [self._health(s) for s in SERVICES]

    def healthy(self, service: str) -> bool:
        return self._health(service).healthy

    # --- Kafka ------------------------------------------------------------------------------
    def _start_kafka(self) -> None:
        s = self.s
        self._check_port_free("kafka", s.kafka_host, s.kafka_port)
        libs = install.ensure_kafka(s.cache_dir, KAFKA_VERSION)
        kdir = self.home / "kafka"
        data = kdir / "data"
        props = kdir / "server.properties"
        kdir.mkdir(parents=True, exist_ok=True)
        props.write_text(_kafka_properties(s, data))
        java = ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{LOG4J}", "-cp", f"{libs}/*"]
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            res = _run_quiet([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)])
            if res[0] != 0:
                raise StackError("formatting the Kafka log directory failed", service="kafka", log_tail=res[1])
        procs.spawn([*java, "kafka.Kafka", str(props)], log=self.log_path("kafka"), pidfile=self._pidfile("kafka"))
        self._wait("kafka")

    # --- Weaviate ---------------------------------------------------------------------------
    def _start_weaviate(self) -> None:
        s = self.s
        self._check_port_free("weaviate", s.weaviate_host, s.weaviate_http_port)
        binary = install.ensure_weaviate(s.cache_dir, WEAVIATE_VERSION)
        data = self.home / "weaviate" / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PERSISTENCE_DATA_PATH": str(data),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_API_BASED_MODULES": "false",
            "CLUSTER_HOSTNAME": "node1",
            "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            "CLUSTER_BIND_ADDR": "127.0.0.1",
            "RAFT_JOIN": "node1",
            "RAFT_BOOTSTRAP_EXPECT": "1",
            **self._weaviate_cluster_ports(),
            "GRPC_PORT": str(s.weaviate_grpc_port),
            "GO_PROFILING_DISABLE": "true",
            "DISABLE_TELEMETRY": "true",
            "QUERY_DEFAULTS_LIMIT": "25",
            "LOG_LEVEL": "info",
        }
        procs.spawn([str(binary), "--host", s.weaviate_host, "--port", str(s.weaviate_http_port), "--scheme", "http"],
                    log=self.log_path("weaviate"), pidfile=self._pidfile("weaviate"), env=env)
        self._wait("weaviate")

    def _weaviate_cluster_ports(self) -> dict[str, str]:
        """Weaviate's internal (gossip, data, Raft) ports: the defaults for the default instance, free
        ones (remembered across restarts, as Raft keeps its address) for any other."""
        names = ("CLUSTER_GOSSIP_BIND_PORT", "CLUSTER_DATA_BIND_PORT", "RAFT_PORT", "RAFT_INTERNAL_RPC_PORT")
        if self.s.weaviate_http_port == 8080:
            return dict(zip(names, ("7946", "7947", "8300", "8301"), strict=True))
        saved = self.home / "weaviate" / "cluster-ports.json"
        if not saved.exists():
            saved.write_text(json.dumps({n: str(procs.free_port()) for n in names}))
        return dict(json.loads(saved.read_text()))

    # --- workers ----------------------------------------------------------------------------
    def _start_worker(self, role: str) -> None:
        self._check_port_free(role, "127.0.0.1", self.s.worker_web_port(role))
        env = {**os.environ, **self.s.as_env(), "PYTHONUNBUFFERED": "1"}
        procs.spawn([sys.executable, "-m", "freshet.cli", "worker", role], log=self.log_path(role),
                    pidfile=self._pidfile(role), env=env)
        self._wait(role)

    # --- health -----------------------------------------------------------------------------
    def _wait(self, service: str) -> None:
        deadline = time.monotonic() + self.s.start_timeout_seconds
        last = ""
        while time.monotonic() < deadline:
            if procs.read_pid(self._pidfile(service)) is None:
                raise StackError(f"{service} exited during start-up; log: {self.log_path(service)}",
                                 service=service, log_tail=procs.log_tail(self.log_path(service)))
            st = self._health(service)
            if st.healthy:
                log.info("ready", service=service, detail=st.detail)
                return
            last = st.detail
            time.sleep(1.0)
        raise StackError(
            f"{service} not ready after {self.s.start_timeout_seconds:.0f}s ({last}); log: {self.log_path(service)}",
            service=service, log_tail=procs.log_tail(self.log_path(service)),
        )

    def _health(self, service: str) -> Status:
        running = procs.read_pid(self._pidfile(service)) is not None
        try:
            detail = {"kafka": self._kafka_detail, "weaviate": self._weaviate_detail}.get(
                service, lambda: self._worker_detail(service))()
            return Status(service, running, True, detail)
        except httpx.ConnectError:
            why = "started but not answering yet" if running else "not running"
        except (TransientError, httpx.HTTPError, ValueError, KeyError) as exc:
            why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return Status(service, running, False, why)

    def _kafka_detail(self) -> str:
        if self.s.kafka_bootstrap == "" and not procs.port_open(self.s.kafka_host, self.s.kafka_port):
            raise ValueError(f"nothing listens on {self.s.kafka_host}:{self.s.kafka_port}")
        info = broker_info(self.s.bootstrap_servers)
        return (f"Kafka {info.api_version} (from ApiVersions; metadata.version level {info.metadata_version}) "
                f"at {self.s.bootstrap_servers}, cluster {info.cluster_id}, {info.brokers} broker(s)")

    def _weaviate_detail(self) -> str:
        base = self.s.weaviate_url
        ready = httpx.get(f"{base}/v1/.well-known/ready", timeout=2.0)
        if ready.status_code != 200:
            raise ValueError(f"not ready (HTTP {ready.status_code})")
        meta = httpx.get(f"{base}/v1/meta", timeout=2.0).json()
        return f"Weaviate {meta['version']} at {base} (gRPC :{self.s.weaviate_grpc_port})"

    def _worker_detail(self, role: str) -> str:
        url = f"http://127.0.0.1:{self.s.worker_web_port(role)}"
        res = httpx.get(f"{url}/healthz", timeout=2.0)
        if res.status_code != 200:
            raise ValueError(f"{role} not ready (HTTP {res.status_code}: {res.text[:100]})")
        return f"{role} worker ready; health {url}/healthz, metrics {url}/metrics"

    def _check_port_free(self, service: str, host: str, port: int) -> None:
        if procs.port_open(host, port):
            raise StackError(
                f"port {port} on {host} is taken by another process, so {service} cannot start; stop it "
                f"or choose another port (see the configuration table in the README)", service=service)


def _kafka_properties(s: Settings, data: Path) -> str:
    host, port, cport = s.kafka_host, s.kafka_port, s.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{cport}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        f"num.partitions={s.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "",
    ])


def _run_quiet(argv: list[str]) -> tuple[int, str]:
    import subprocess

    res = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    return res.returncode, (res.stdout + res.stderr)[-4000:]
