"""The local stack: Kafka (KRaft), Weaviate, and the indexer and query workers, one of each or a
cluster of N (see :mod:`ops.cluster` for names and ports, docs/cluster.md for the user's view).

Everything lives under ``settings.home`` (default ``./.freshet``)::

    .freshet/
      cluster.json        the stack's shape and ports (ops.cluster.Layout)
      kafka/ kafka-2/     server.properties and each broker's log segments
      weaviate/ ...       each Weaviate node's data
      workers/            Faust state of the workers
      logs/               kafka.log, kafka-2.log, weaviate.log, indexer.log, indexer-2.log, query.log, ...
      run/                one pid file per running service
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from freshet.errors import StackError, TransientError
from freshet.settings import KAFKA_VERSION, WEAVIATE_VERSION, Settings
from ops import cluster, install, procs, secure
from ops.cluster import KafkaNode, Layout, Shape, WeaviateNode, Worker
from workers.kafka_admin import admin_client, broker_info, ensure_topics
from workers.retry import within

log = structlog.get_logger(__name__)

#: The kinds of service; each runs as one instance or several (``kafka``, ``kafka-2``, ...).
SERVICES = cluster.KINDS
LOG4J = Path(__file__).resolve().parent / "kafka" / "log4j.properties"


@dataclass(frozen=True)
class Status:
    service: str
    """The instance: ``kafka``, ``kafka-2``, ``weaviate``, ``indexer-2``, ..."""
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
        topic_generations=f"{tag}.generations",
        collection="C_" + tag.replace("-", "_").replace(".", "_"), consumer_group_prefix=tag,
        indexer_web_port=procs.free_port(), query_web_port=procs.free_port(), indexer_url="", home=home,
    )
    fields.update(overrides)
    return Settings(**fields)


def drop_pipeline(s: Settings) -> None:
    """Delete an isolated pipeline's collection and every topic of its consumer-group prefix
    (its own topics and the Faust internals: state changelog, leader topic)."""
    from kafka import KafkaAdminClient

    from workers.weaviate_store import client_for

    client = client_for(s)
    try:
        client.collections.delete(s.collection)
    finally:
        client.close()
    admin = KafkaAdminClient(**s.kafka_access.kafka_python())
    try:
        ours = [t for t in admin.list_topics() if t.startswith(s.consumer_group_prefix + ".")
                or t.startswith(s.consumer_group_prefix + "-")]
        if ours:
            admin.delete_topics(ours)
    finally:
        admin.close()


class Stack:
    """Starts, stops and inspects the local services described by one :class:`Settings`.

    ``shape`` says how many of each service to run; None means the shape the home was last started
    with (``cluster.json``), or one of each. ``self.s`` are the settings every process of the stack
    uses: ``settings`` plus, for a cluster, every broker and the cluster's replication.
    """

    def __init__(self, settings: Settings, shape: Shape | None = None) -> None:
        self.home = settings.home
        self._saved = cluster.load(self.home)
        self.shape = shape or (self._saved.shape if self._saved else Shape())
        self.layout = self._plan(settings)
        self.secrets = secure.ensure(self.home) if self.shape.secure else None
        self.s = cluster.cluster_settings(settings, self.layout)

    def _plan(self, settings: Settings) -> Layout:
        first = cluster.legacy_weaviate_ports(self.home) if self._saved is None and self.shape.weaviate_nodes == 1 \
            else None
        ports = cluster.Ports(procs.free_port, procs.free_port_pair, lambda p: procs.port_open("127.0.0.1", p))
        return cluster.plan(settings, self.shape, self._saved, ports, weaviate1_internal=first)

    def log_path(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"

    def _pidfile(self, service: str) -> Path:
        return self.home / "run" / f"{service}.pid"

    # --- lifecycle ------------------------------------------------------------------------
    def up(self, services: Iterable[str] = SERVICES) -> None:
        """Install what is missing, then start every instance not already running; wait for health.
        Brokers and Weaviate nodes start together (a quorum needs its majority before any is ready)."""
        wanted = set(services)
        cluster.check_reshape(self.home, self._saved.shape if self._saved else Shape(), self.shape)
        cluster.save(self.home, self.layout)
        self._saved = self.layout  # a later up() of this object checks its reshape against this one
        self._stop_extra_workers()
        if "kafka" in wanted:
            self._start_kafka()
            within(lambda: ensure_topics(self.s.kafka_access, self.s.topics(), partitions=self.s.topic_partitions,
                                         replication=self.s.topic_replication,
                                         compacted=[self.s.topic_applied, self.s.topic_generations]),
                   timeout=self.s.start_timeout_seconds, what="topics")  # brokers still catching up, restarted
        if "weaviate" in wanted:
            self._start_weaviate()
            if self.secrets is not None:
                self._grant_weaviate()
            if self.shape.weaviate_nodes > 1:
                self._ensure_collection()
        workers = [w for w in self.layout.workers if w.role in wanted]
        if workers:
            self._start_workers(workers)

    def down(self, services: Iterable[str] = SERVICES) -> None:
        """Stop services, workers first (they drain before their broker and store go); the nodes of
        one kind together."""
        wanted = set(services)
        for kind in reversed(SERVICES):
            names = [n for n in self._instances(kind) if n in wanted or kind in wanted]
            for pidfile in procs.stop_all([self._pidfile(n) for n in names], timeout=45 if kind == "kafka" else 30):
                log.info("stopped", service=pidfile.stem)

    def clean(self) -> None:
        """Stop everything and wipe every data directory, log and pid file."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)
        log.info("wiped", path=str(self.home))

    def status(self) -> list[Status]:
        return [self._health(n) for n in self.layout.all_names()]

    def healthy(self, service: str) -> bool:
        return self._health(service).healthy

    def restart_workers(self, role: str) -> list[str]:
        """Restart the running workers of ``role`` (they read the generations topic again at start:
        freshet reindex); the names of those restarted, none when none ran."""
        running = [n for n in self._instances(role) if procs.read_pid(self._pidfile(n)) is not None]
        if running:
            self.down(running)
            self.up([role])
        return running

    def _instances(self, kind: str) -> list[str]:
        """Every instance of ``kind`` in the layout, and any other one a pid file names (a worker of a
        larger shape started before)."""
        names = self.layout.names(kind)
        run = self.home / "run"
        extra = sorted(p.stem for p in run.glob(f"{kind}-*.pid") if p.stem.split("-")[-1].isdigit()) \
            if run.is_dir() else []
        return names + [n for n in extra if n not in names]

    def _stop_extra_workers(self) -> None:
        for kind in ("indexer", "query"):
            extra = [n for n in self._instances(kind) if n not in self.layout.names(kind)]
            for pidfile in procs.stop_all([self._pidfile(n) for n in extra]):
                log.info("stopped", service=pidfile.stem, why="not in the stack's shape any more")

    # --- Kafka ------------------------------------------------------------------------------
    def _start_kafka(self) -> None:
        s = self.s
        todo = [n for n in self.layout.kafka if not self.healthy(n.name)]
        if not todo:
            log.info("already_running", service="kafka", brokers=len(self.layout.kafka))
            return
        libs = install.ensure_kafka(s.cache_dir, KAFKA_VERSION)
        java = ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{LOG4J}", "-cp", f"{libs}/*"]
        for node in todo:
            if procs.read_pid(self._pidfile(node.name)) is not None:
                continue  # started, not ready yet: wait for it below
            self._check_port_free(node.name, s.kafka_host, node.port)
            self._check_port_free(node.name, s.kafka_host, node.controller_port)
            if node.tls_port and self.secrets is not None:
                self._check_port_free(node.name, s.kafka_host, node.tls_port)
            props = self._write_kafka_config(node)
            if not (props.parent / "data" / "meta.properties").exists():
                scram = secure.format_args(self.secrets) if self.secrets else []
                res = _run_quiet([*java, "kafka.tools.StorageTool", "format", f"--cluster-id={self.layout.cluster_id}",
                                  "-c", str(props), *scram])
                if res[0] != 0:
                    raise StackError("formatting the Kafka log directory failed", service=node.name, log_tail=res[1])
            procs.spawn([*java, "kafka.Kafka", str(props)], log=self.log_path(node.name),
                        pidfile=self._pidfile(node.name))
        self._wait([n.name for n in todo])
        if len(self.layout.kafka) > 1:
            self._wait_until("kafka", lambda: self._registered_brokers() == len(self.layout.kafka),
                             f"{len(self.layout.kafka)} brokers registered")
        if self.secrets is not None:
            self._grant()

    def _grant(self) -> None:
        """Create the ACLs of every role (idempotent)."""
        admin = admin_client(self.s.kafka_access)
        try:
            n = secure.create_acls(admin, secure.grants(self.s))
        except Exception as exc:  # noqa: BLE001 - the broker's answer, whatever it is, stops the start
            raise StackError(f"creating the Kafka ACLs failed: {exc}", service="kafka") from exc
        finally:
            admin.close()
        log.info("kafka_acls", acls=n, roles=len(secure.ROLES) - 1)

    def _write_kafka_config(self, node: KafkaNode) -> Path:
        kdir = self.home / node.name
        kdir.mkdir(parents=True, exist_ok=True)
        props = kdir / "server.properties"
        props.touch(mode=0o600)
        props.chmod(0o600)  # a secured broker's holds its inter-broker password
        props.write_text(cluster.kafka_properties(self.s, self.layout, node, kdir / "data", self.secrets))
        return props

    def _registered_brokers(self) -> int:
        try:
            return broker_info(self.s.kafka_access).brokers
        except TransientError:
            return 0

    # --- Weaviate ---------------------------------------------------------------------------
    def _start_weaviate(self) -> None:
        s = self.s
        todo = [n for n in self.layout.weaviate if not self.healthy(n.name)]
        if not todo:
            log.info("already_running", service="weaviate", nodes=len(self.layout.weaviate))
            return
        binary = install.ensure_weaviate(s.cache_dir, WEAVIATE_VERSION)
        gossip = self.layout.weaviate[0].gossip_port
        for node in todo:
            if procs.read_pid(self._pidfile(node.name)) is not None:
                continue
            if node.index > 1 and not procs.port_open(s.weaviate_host, gossip):
                # a node exits when it cannot join the first one's gossip
                self._wait_until("weaviate", lambda: procs.port_open(s.weaviate_host, gossip),
                                 f"listening for gossip on {gossip}")
            for port in (node.http_port, node.grpc_port, node.gossip_port, node.data_port, node.raft_port,
                         node.raft_rpc_port):
                self._check_port_free(node.name, s.weaviate_host, port)
            data = self.home / node.name / "data"
            data.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, **cluster.weaviate_env(s, self.layout, node, data, self.secrets)}
            procs.spawn([str(binary), "--host", s.weaviate_host, "--port", str(node.http_port), "--scheme", "http"],
                        log=self.log_path(node.name), pidfile=self._pidfile(node.name), env=env)
        self._wait([n.name for n in todo])
        if len(self.layout.weaviate) > 1:
            want = len(self.layout.weaviate)
            self._wait_until("weaviate", lambda: self._healthy_weaviate_nodes() == want, f"{want} healthy nodes")

    def _grant_weaviate(self) -> None:
        """Give the indexer's and the query worker's API keys their roles (idempotent)."""
        from workers.weaviate_store import client_for

        try:
            client = client_for(self.s)
            try:
                secure.grant_weaviate(client, self.s.collection)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - whatever Weaviate answered stops the start
            raise StackError(f"giving the Weaviate API keys their roles failed: {exc}", service="weaviate") from exc
        log.info("weaviate_roles", roles=sorted(secure.WEAVIATE_ROLES.values()), collection=f"{self.s.collection}*")

    def _healthy_weaviate_nodes(self, node: WeaviateNode | None = None) -> int:
        url = f"http://{self.s.weaviate_host}:{(node or self.layout.weaviate[0]).http_port}/v1/nodes"
        try:
            nodes = httpx.get(url, timeout=5.0, headers=self.s.weaviate_headers).json().get("nodes", [])
        except (httpx.HTTPError, ValueError):
            return 0
        return sum(1 for n in nodes if n.get("status") == "HEALTHY")

    def _ensure_collection(self) -> None:
        """Create the collection with the cluster's replication factor before any worker can create
        it with another one (a running worker only checks it)."""
        from workers.weaviate_store import store_for

        s = self.s
        store = store_for(s, timeout=30.0, failover=())

        async def run() -> None:
            await store.start()
            await store.close()

        asyncio.run(run())

    # --- workers ----------------------------------------------------------------------------
    def _start_workers(self, workers: Sequence[Worker]) -> None:
        """Spawn every worker not running, then wait for all: they load their models side by side and
        join their consumer groups together (one rebalance rather than one per worker)."""
        todo = [w for w in workers if not self.healthy(w.name)]
        for w in todo:
            if procs.read_pid(self._pidfile(w.name)) is not None:
                continue
            self._check_port_free(w.name, "127.0.0.1", w.web_port)
            env = {**os.environ, **cluster.worker_env(self.s, self.layout, w), "PYTHONUNBUFFERED": "1"}
            procs.spawn([sys.executable, "-m", "freshet.cli", "worker", w.role], log=self.log_path(w.name),
                        pidfile=self._pidfile(w.name), env=env)
        if todo:
            self._wait([w.name for w in todo])

    # --- health -----------------------------------------------------------------------------
    def _wait(self, services: Sequence[str]) -> None:
        """Wait until every one of ``services`` is healthy; raise on the first that exits or the timeout."""
        deadline = time.monotonic() + self.s.start_timeout_seconds
        pending = list(services)
        last: dict[str, str] = {}
        while pending:
            for service in list(pending):
                if procs.read_pid(self._pidfile(service)) is None:
                    raise StackError(f"{service} exited during start-up; log: {self.log_path(service)}",
                                     service=service, log_tail=procs.log_tail(self.log_path(service)))
                st = self._health(service)
                if st.healthy:
                    log.info("ready", service=service, detail=st.detail)
                    pending.remove(service)
                else:
                    last[service] = st.detail
            if not pending:
                return
            if time.monotonic() > deadline:
                service = pending[0]
                raise StackError(
                    f"{service} not ready after {self.s.start_timeout_seconds:.0f}s ({last.get(service, '')}); "
                    f"log: {self.log_path(service)}",
                    service=service, log_tail=procs.log_tail(self.log_path(service)))
            time.sleep(1.0)

    def _wait_until(self, service: str, check: Callable[[], bool], what: str) -> None:
        """Wait until ``check()`` holds while ``service`` (an instance) keeps running."""
        deadline = time.monotonic() + self.s.start_timeout_seconds
        while not check():
            if procs.read_pid(self._pidfile(service)) is None:
                raise StackError(f"{service} exited while waiting for {what}; log: {self.log_path(service)}",
                                 service=service, log_tail=procs.log_tail(self.log_path(service)))
            if time.monotonic() > deadline:
                raise StackError(f"{service}: not {what} after {self.s.start_timeout_seconds:.0f}s; logs in "
                                 f"{self.home / 'logs'}", service=service)
            time.sleep(1.0)
        log.info("cluster_ready", service=service, detail=what)

    def _health(self, service: str) -> Status:
        running = procs.read_pid(self._pidfile(service)) is not None
        kind, _, number = service.partition("-")
        index = int(number) if number.isdigit() else 1
        try:
            if kind == "kafka":
                detail = self._kafka_detail(self.layout.kafka[index - 1])
            elif kind == "weaviate":
                detail = self._weaviate_detail(self.layout.weaviate[index - 1])
            else:
                detail = self._worker_detail(self._worker(kind, index))
            return Status(service, running, True, detail)
        except httpx.ConnectError:
            why = "started but not answering yet" if running else "not running"
        except IndexError:
            why = f"not part of the stack's shape ({self.shape})"
        except (TransientError, httpx.HTTPError, ValueError, KeyError) as exc:
            why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return Status(service, running, False, why)

    def _worker(self, role: str, index: int) -> Worker:
        for w in self.layout.workers:
            if (w.role, w.index) == (role, index):
                return w
        raise IndexError(f"{role}-{index}")

    def _kafka_detail(self, node: KafkaNode) -> str:
        s = self.s
        single = len(self.layout.kafka) == 1
        if single and s.kafka_bootstrap:  # a broker elsewhere (containers, CI): report that one
            bootstrap = s.kafka_access
        else:
            bootstrap = dataclasses.replace(s.kafka_access, bootstrap=f"{s.kafka_host}:{node.port}")
            if not procs.port_open(s.kafka_host, node.port):
                raise ValueError(f"nothing listens on {bootstrap}")
        info = broker_info(bootstrap)
        who = "" if single else f"node {node.index}, "
        secured = f", secured: {s.kafka_access.describe()}" if s.kafka_access.security_protocol != "PLAINTEXT" else ""
        if self.secrets is not None:
            secured += ", ACLs on" + (f", mutual TLS on :{node.tls_port}" if node.tls_port else "")
        return (f"Kafka {info.api_version} (from ApiVersions; metadata.version level {info.metadata_version}) "
                f"at {bootstrap}, {who}cluster {info.cluster_id}, {info.brokers} broker(s){secured}")

    def _weaviate_detail(self, node: WeaviateNode) -> str:
        base = f"http://{self.s.weaviate_host}:{node.http_port}"
        ready = httpx.get(f"{base}/v1/.well-known/ready", timeout=2.0)
        if ready.status_code != 200:
            raise ValueError(f"not ready (HTTP {ready.status_code})")
        meta = httpx.get(f"{base}/v1/meta", timeout=2.0, headers=self.s.weaviate_headers).json()
        detail = f"Weaviate {meta['version']} at {base} (gRPC :{node.grpc_port})"
        if self.secrets is not None:
            detail += ", secured: API keys and roles"
        if len(self.layout.weaviate) > 1:
            healthy = self._healthy_weaviate_nodes(node)
            detail += f", {node.hostname}, {healthy} of {len(self.layout.weaviate)} nodes healthy"
        return detail

    def _worker_detail(self, w: Worker) -> str:
        url = f"http://127.0.0.1:{w.web_port}"
        res = httpx.get(f"{url}/healthz", timeout=2.0)
        if res.status_code != 200:
            raise ValueError(f"{w.name} not ready (HTTP {res.status_code}: {res.text[:100]})")
        return f"{w.role} worker ready; health {url}/healthz, metrics {url}/metrics"

    def _check_port_free(self, service: str, host: str, port: int) -> None:
        if procs.port_open(host, port):
            raise StackError(
                f"port {port} on {host} is taken by another process, so {service} cannot start; stop it "
                f"or choose another port (see docs/configuration.md)", service=service)


def _run_quiet(argv: list[str]) -> tuple[int, str]:
    import subprocess

    res = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    return res.returncode, (res.stdout + res.stderr)[-4000:]
