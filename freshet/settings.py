"""The one settings object of a freshet process.

Every value comes from an environment variable with the ``FRESHET_`` prefix (or a ``.env`` file in
the working directory), e.g. ``FRESHET_KAFKA_BOOTSTRAP=broker:9092``. The entry point builds one
:class:`Settings` and passes it down; nothing else reads ``os.environ``. The configuration
reference (docs/configuration.md) is the user-facing copy of this file.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from freshet.kafka_access import KafkaAccess, Mechanism, Protocol
from schemas.debezium import Mapping as DebeziumMapping
from schemas.search import DEFAULT_ALPHA
from workers.chunking import Context, TitleContext
from workers.store import HnswConfig
from workers.tenancy import TenantPolicy, parse_tenants

#: Pinned versions of the local stack. Keep in step with ops/kafka/pom.xml and docker-compose.yml.
KAFKA_VERSION = "3.9.1"
WEAVIATE_VERSION = "v1.35.2"


METADATA_TYPES = ("text", "text[]", "int", "number", "boolean", "date")


def parse_metadata_fields(spec: str) -> dict[str, str]:
    """Parse ``'name:type,name:type'``; raise ValueError naming the bad part."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, kind = part.partition(":")
        if not name.isidentifier() or kind not in METADATA_TYPES:
            raise ValueError(f"metadata field {part!r} must be 'name:type' with a Python-identifier name and "
                             f"a type among {', '.join(METADATA_TYPES)}")
        out[name] = kind
    return out


def parse_nodes(spec: str) -> list[tuple[str, int, int]]:
    """Parse ``'host:http_port:grpc_port,...'``; raise ValueError naming the bad part."""
    out: list[tuple[str, int, int]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        host, *ports = part.rsplit(":", 2)
        if len(ports) != 2 or not host or not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
            raise ValueError(f"Weaviate node {part!r} must be 'host:http_port:grpc_port'")
        out.append((host, int(ports[0]), int(ports[1])))
    return out


class Settings(BaseSettings):
    """Configuration of every freshet process (workers, CLI, launcher, tests)."""

    model_config = SettingsConfigDict(
        env_prefix="FRESHET_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Kafka -------------------------------------------------------------------------------
    kafka_host: str = Field("127.0.0.1", description="Host the local Kafka broker listens on.")
    kafka_port: int = Field(9092, description="Port of the local Kafka broker's client listener.")
    kafka_controller_port: int = Field(9093, description="Port of the local KRaft controller.")
    kafka_bootstrap: str = Field(
        "", description="Bootstrap servers (host:port,...); empty means kafka_host:kafka_port."
    )
    topic_changes: str = Field("freshet.changes", description="Document change events (input).")
    topic_requests: str = Field("freshet.search.requests", description="Search requests (input).")
    topic_replies: str = Field("freshet.search.replies", description="Default reply topic.")
    topic_applied: str = Field(
        "freshet.applied", description="One record per applied change: doc, version, chunk ids."
    )
    topic_dead_letter: str = Field("freshet.deadletter", description="Rejected records + reason.")
    topic_metrics: str = Field("freshet.metrics", description="Periodic metric snapshots.")
    topic_generations: str = Field(
        "freshet.generations", description="The index generations and which one is active (compacted; written by "
                                           "freshet reindex, followed by every worker).")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the topics freshet creates.")
    topic_replication: int = Field(1, ge=1, description="Replication factor of the topics freshet creates "
                                                        "(its own and Faust's changelog); 3 on a production cluster.")
    consumer_group_prefix: str = Field("freshet", description="Faust app id / consumer group prefix.")
    kafka_security_protocol: Protocol = Field("PLAINTEXT", description=(
        "Kafka's security.protocol for every client: PLAINTEXT, SSL (TLS; mutual TLS with a client certificate), "
        "SASL_PLAINTEXT or SASL_SSL (SASL over TLS: the one to use in production)."))
    kafka_sasl_mechanism: Mechanism = Field("SCRAM-SHA-512", description=(
        "Kafka's sasl.mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN."))
    kafka_sasl_username: str = Field("", description="SASL user name (sasl.jaas.config's username).")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password; never logged or printed.")
    kafka_ssl_cafile: str = Field("", description=(
        "CA bundle (PEM) that signed the brokers' certificates (ssl.truststore); empty: the system's trust store."))
    kafka_ssl_certfile: str = Field("", description="Client certificate (PEM) for mutual TLS (ssl.keystore).")
    kafka_ssl_keyfile: str = Field("", description="The client certificate's private key (PEM).")
    kafka_ssl_key_password: SecretStr = Field(SecretStr(""), description="Password of the client key, if any.")
    kafka_ssl_check_hostname: bool = Field(True, description=(
        "Check that a broker's certificate names the host connected to (ssl.endpoint.identification.algorithm=https)."))

    # --- Debezium input (docs/inputs.md) --------------------------------------------------------
    debezium_topic: str = Field("", description=(
        "A topic of Debezium change envelopes the indexer worker bridges to the changes topic (its own consumer "
        "group, <prefix>-debezium-bridge); empty = off."))
    debezium_doc_id: str = Field("id", description="Column of the row that is the document id (the primary key).")
    debezium_content: str = Field("body", description="Column holding the document's text (NULL: empty text).")
    debezium_title: str = Field("", description="Column holding the title; empty = none.")
    debezium_version: str = Field("source.lsn", description=(
        "Where a change's version comes from, rising per row: a column (a timestamp in any Debezium encoding, or "
        "an integer), 'source.<field>' of the envelope (source.lsn for PostgreSQL) or ts_ms / ts_us / ts_ns."))
    debezium_metadata: str = Field("", description="Columns copied into the event's metadata, comma-separated.")
    debezium_tenant: str = Field("", description="Column holding the tenant; empty = no tenant.")
    debezium_content_type: Literal["text/markdown", "text/plain"] = Field(
        "text/markdown", description="content_type of the events made from the rows.")

    # --- Weaviate ----------------------------------------------------------------------------
    weaviate_host: str = Field("127.0.0.1", description="Weaviate host (HTTP and gRPC).")
    weaviate_http_port: int = Field(8080, description="Weaviate REST port.")
    weaviate_grpc_port: int = Field(50051, description="Weaviate gRPC port.")
    weaviate_api_key: SecretStr = Field(SecretStr(""), description=(
        "API key sent to Weaviate (Authorization: Bearer, REST and gRPC); empty: anonymous. The indexer's needs "
        "data and collection rights, the query worker's only read rights (docs/security.md). Never logged."))
    weaviate_http_secure: bool = Field(False, description=(
        "HTTPS to Weaviate's REST port (Weaviate behind a TLS-terminating proxy, or started with --tls-*)."))
    weaviate_grpc_secure: bool = Field(False, description=(
        "TLS to Weaviate's gRPC port (a TLS-terminating proxy, or Weaviate's GRPC_CERT_FILE / GRPC_KEY_FILE)."))
    weaviate_failover: str = Field(
        "", description="Other nodes of the same Weaviate cluster, host:http_port:grpc_port, comma-separated: a worker "
                        "whose node stops answering moves to the next of them (and on round). The local cluster "
                        "gives each worker every other node.")
    collection: str = Field("FreshetChunk", description="Weaviate collection holding the chunks.")
    generation: str = Field("", description=(
        "The index generation this worker builds or serves. Set by freshet reindex on the workers of a generation "
        "it builds (with that generation's collection, consumer groups, model and chunker settings); must equal "
        "the fingerprint of those settings. Empty: follow the active generation on the generations topic, or "
        "serve the first one (FRESHET_COLLECTION) when there is none."))
    generation_grace_seconds: float = Field(60.0, ge=0, description=(
        "After freshet reindex switches to a new generation, how long the old one is kept (and its indexers run) "
        "before its collection is deleted: time for every query worker to switch."))
    reuse_vectors_from: str = Field("", description=(
        "A collection made with the same model and title/heading context (the previous generation, set by "
        "freshet reindex on a chunker-only change): a new chunk whose text is stored there takes its vector "
        "instead of being embedded."))
    weaviate_replication_factor: int = Field(
        1, ge=1, description="Replication factor the collection is created with (an existing collection keeps its "
                             "own; a difference is logged as collection_replication_mismatch). The local cluster "
                             "(freshet stack up --weaviate-nodes N) sets min(3, N).")
    weaviate_timeout_seconds: float = Field(
        30.0, gt=0, le=45, description="Longest Weaviate call (query, insert, delete) before it fails and is retried. "
                                       "A revoked indexer waits for its calls in flight before it rejoins the group, "
                                       "within Faust's 60 s rebalance timeout: hence at most 45.")
    weaviate_consistency: Literal["ONE", "QUORUM", "ALL"] = Field(
        "QUORUM", description="Consistency level of every write, delete and read of the collection. With 1 replica "
                              "the three are the same; with 3, QUORUM writes and QUORUM reads overlap in one replica "
                              "(a search sees every acknowledged chunk) and tolerate one node down.")

    # --- Tenants -------------------------------------------------------------------------------
    multi_tenancy: bool = Field(False, description=(
        "Weaviate's native multi-tenancy: one tenant shard per tenant (made by the tenant's first write), every "
        "read and write addressed to one shard. Events without a tenant are dead-lettered (tenant_required) and "
        "a search without one is an error. Fixed when the collection is made: a worker refuses to start on a "
        "collection made with the other setting."))
    query_tenants: str = Field("", description=(
        "The tenants this query worker answers for, comma-separated; empty = any. A search for another tenant "
        "(or, when set, for none) is answered with an error (tenant_not_allowed, tenant_required)."))

    # --- Model -------------------------------------------------------------------------------
    model: str = Field(
        "", description="sentence-transformers model name or path; empty = bundled all-MiniLM-L6-v2."
    )
    model_device: str = Field("cpu", description="Torch device for the embedding model.")
    model_backend: Literal["auto", "bert", "sentence-transformers", "onnx", "onnx-int8"] = Field(
        "auto", description="How the model runs: 'bert' (a BERT model with mean pooling, such as the default, in "
                            "plain torch: the same vectors, and a worker starts about 10 s sooner without importing "
                            "sentence-transformers), 'sentence-transformers' (any model), 'auto' ('bert' when the "
                            "model is a local directory of that shape); 'onnx' and 'onnx-int8' run such a model on "
                            "ONNX Runtime, exported locally into the cache directory on first use (the 'onnx' "
                            "extra), 'onnx-int8' with int8 weights: faster, and slightly different vectors "
                            "(docs/benchmarks.md has both measured against 'bert').")
    embed_batch_size: int = Field(8, ge=1, description=(
        "Texts per model forward pass (cut from a length-sorted group). 8 measured fastest on a 2-core CPU for "
        "all-MiniLM-L6-v2: 55-57 chunks/s in groups of 64 texts against 41 with 32 and 48 with 4 "
        "(docs/benchmarks.md)."))

    # --- Keyword search and fusion -------------------------------------------------------------
    bm25_k1: float = Field(0.9, ge=0, le=3, description="BM25 term-frequency saturation of the keyword side "
                                                         "(the collection's setting; applied at each start).")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 length normalization of the keyword side "
                                                       "(the collection's setting; applied at each start).")
    keyword_operator: Literal["or", "and"] = Field(
        "or", description="Which chunks the keyword side matches: 'or' any analyzed query word, 'and' every one.")
    hybrid_fusion: Literal["relative_score", "ranked"] = Field(
        "relative_score", description="How hybrid search fuses its sides: 'relative_score' (each side's scores "
                                      "min-max normalized, then weighted by alpha) or 'ranked' (reciprocal ranks).")
    hybrid_alpha: float = Field(DEFAULT_ALPHA, ge=0, le=1, description=(
        "Hybrid weight of the vector side for requests without an alpha of their own (1: vector alone, 0: keyword)."))
    hybrid_candidates: int = Field(50, ge=1, le=1000, description=(
        "Chunks each side of a hybrid search finds (at least the hits asked for) before the worker fuses them."))

    # --- Vector index (HNSW) ------------------------------------------------------------------
    hnsw_ef: int = Field(16, ge=-1, description=(
        "Search-time ef of the collection's HNSW index (applied at each start; Weaviate raises it to the "
        "hits asked for, -1 is its dynamic ef: limit x 8 between 100 and 500). 16, the lowest latency with "
        "recall@10 and @50 at least 0.99 against the exact ranking on 10,018 chunks (freshet bench hnsw); "
        "rerun it on a larger collection."))
    hnsw_ef_construction: int = Field(128, ge=4, description=(
        "efConstruction of the HNSW index, used when the collection is created (fixed afterwards)."))
    hnsw_max_connections: int = Field(32, ge=4, description=(
        "maxConnections of the HNSW index, used when the collection is created (fixed afterwards)."))

    # --- Indexer -----------------------------------------------------------------------------
    index_batch_size: int = Field(64, ge=1, description=(
        "Max change events per micro-batch. Its new chunks are embedded sorted by length, so a backlog drains "
        "faster in larger batches (docs/benchmarks.md: 0.57 of the model's rate at 64, 0.62 at 256); a quiet "
        "stream's batches stay small (FRESHET_INDEX_LINGER_SECONDS)."))
    index_linger_seconds: float = Field(0.5, gt=0, description="Max wait to fill a micro-batch.")
    chunk_min_chars: int = Field(100, ge=0, description="A shorter block joins the next one in its section.")
    embed_title: TitleContext = Field("first", description=(
        "Embed the document's title ahead of the text of its 'first' chunk (a title change re-embeds that "
        "chunk), of 'all' its chunks (a title change re-embeds the document), or 'none'."))
    embed_headings: bool = Field(False, description=(
        "Embed each chunk's heading path ahead of its text (a renamed heading then re-embeds its section)."))
    embed_cache_size: int = Field(50_000, ge=0, description="Vectors kept by (model, chunk hash); 0 disables.")
    metadata_fields: str = Field(
        "", description="Declared (filterable) metadata fields, e.g. 'lang:text,year:int,tags:text[]'; "
                        "types text, text[], int, number, boolean, date. Others are stored, not filterable.")
    max_document_bytes: int = Field(1_000_000, ge=1, description="Larger change events (bytes) are dead-lettered.")
    max_chunks_per_document: int = Field(
        5_000, ge=1, description="A document version that chunks into more is dead-lettered (too_many_chunks) "
                                 "before anything is written: its state (about 100 bytes per chunk) must fit one "
                                 "Kafka record of the state changelog.")
    dead_letter_max_bytes: int = Field(
        900_000, ge=1024, description="A dead-lettered value larger than this is cut to it (header "
                                      "freshet.truncated names the original size); keep it below the producer's "
                                      "max request size (1 MB) and the broker's message.max.bytes.")
    delete_grace_seconds: float = Field(
        30.0, ge=0, description="A rewritten document's old chunks are deleted this long after its new version "
                                "is applied, so a query worker whose applied view lags by up to this much still "
                                "finds the document while it is rewritten.")
    read_back_page_records: int = Field(
        500, ge=1, description="The delivery guard reads skipped records back in pages of this many records, "
                               "each handled as one batch before the next is read.")
    kafka_session_timeout_seconds: float = Field(
        15.0, ge=6, le=300, description="Consumer-group session timeout: how soon a crashed worker's partitions "
                                        "move to a live one (a restart waits this long).")
    kafka_request_timeout_seconds: float = Field(
        30.0, ge=1, description="How long the workers' producer waits for the broker before a send fails (and "
                                "is retried by freshet); Faust's own default is 20 minutes.")
    metrics_interval_seconds: float = Field(5.0, gt=0, description="How often workers measure lag and publish "
                                                                 "a snapshot to the metrics topic.")
    probe_interval_seconds: float = Field(5.0, gt=0, description="How often the query worker's searchability "
                                                               "probe searches recently applied chunks.")
    quality_interval_seconds: float = Field(60.0, gt=0, description="How often the query worker runs the golden-set "
                                                                  "and ANN-recall probes.")
    golden_dir: str = Field("", description="A BEIR-layout golden set judged against the indexed documents, "
                                            "evaluated by the query worker on schedule; empty = off.")
    golden_modes: str = Field("hybrid,vector,keyword", description="Search modes of the golden-set probe.")
    delivery_check_seconds: float = Field(
        10.0, gt=0, description="How often the delivery guard checks each partition's tail for records the "
                                "consumer skipped (read back once the position has not moved for one period).")

    # --- Query worker ------------------------------------------------------------------------
    query_concurrency: int = Field(8, ge=1, description="Search requests handled at once.")
    query_deadline_ms: int = Field(30_000, ge=1, description="Deadline of a request that sets none (ms from "
                                                             "its Kafka timestamp); bounds fence waits.")
    query_max_wait_ms: int = Field(60_000, ge=1, description="Upper bound on how long one request may hold a "
                                                             "worker slot (fence wait + search), measured on "
                                                             "the worker's own clock, whatever its deadline says.")
    reply_topic_pattern: str = Field(
        "", description="Glob of the topics replies may go to (a request's reply_to or reply-topic header); empty "
                        "means '<topic_replies>*', i.e. freshet.search.replies*. Other topics get an error reply on "
                        "the default reply topic; topics freshet itself uses are always refused.")
    query_overfetch: float = Field(2.0, ge=1.0, description="Ask the store for this many times top_k hits, so "
                                                            "enough survive the applied-view check.")
    query_cache_size: int = Field(1024, ge=0, description="Query vectors kept (by model and query text).")

    # --- Workers' HTTP (health, metrics) -----------------------------------------------------
    web_bind: str = Field("127.0.0.1", description="Address the workers' HTTP servers bind to.")
    indexer_web_port: int = Field(6066, description="Indexer worker HTTP port (/healthz, /metrics).")
    indexer_url: str = Field("", description="Base URL of the indexer's HTTP server for `freshet stats`; "
                                              "empty means http://127.0.0.1:<indexer_web_port>.")
    query_web_port: int = Field(6067, description="Query worker HTTP port (/healthz, /metrics).")
    state_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="Local store of the indexer's state table: rocksdb keeps it on disk in the worker's "
                               "data directory with the changelog offset it holds, so a restart or an assignment "
                               "reads only newer changelog records; memory rebuilds it from the whole changelog.")
    worker_instance: str = Field("", description="Name of this worker among several of its role (e.g. indexer-2; "
                                                  "the local stack sets it); its Faust data directory is "
                                                  "<home>/workers/<instance>/<app id>. Empty means the role.")

    # --- Local stack -------------------------------------------------------------------------
    home: Path = Field(Path(".freshet"), description="Data, logs and pid files of the local stack.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "freshet",
        description="Kafka jars, the Weaviate binary and ONNX exports of the model, kept across clones, keyed "
                    "by version.",
    )
    start_timeout_seconds: float = Field(120.0, gt=0, description="Wait for each service to be ready.")
    log_level: str = Field("INFO", description="Log level of every process.")

    @field_validator("metadata_fields")
    @classmethod
    def _metadata_syntax(cls, value: str) -> str:
        parse_metadata_fields(value)
        return value

    @field_validator("debezium_topic")
    @classmethod
    def _debezium_topic_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
            raise ValueError(f"Debezium topic {value!r} is no Kafka topic name (letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _debezium_mapping_complete(self) -> Settings:
        if self.debezium_topic:
            if self.debezium_topic in self.topics():
                raise ValueError(f"FRESHET_DEBEZIUM_TOPIC {self.debezium_topic!r} is one of freshet's own topics")
            missing = [f"FRESHET_DEBEZIUM_{n.upper()}" for n in ("doc_id", "content", "version")
                       if not getattr(self, f"debezium_{n}").strip()]
            if missing:
                raise ValueError(f"a Debezium topic needs {', '.join(missing)} (docs/inputs.md)")
        return self

    @field_validator("weaviate_failover")
    @classmethod
    def _failover_syntax(cls, value: str) -> str:
        parse_nodes(value)
        return value

    @cached_property
    def weaviate_nodes(self) -> list[tuple[str, int, int]]:
        """(host, http port, gRPC port) of this worker's Weaviate node, then its failover nodes."""
        return [(self.weaviate_host, self.weaviate_http_port, self.weaviate_grpc_port),
                *parse_nodes(self.weaviate_failover)]

    @field_validator("home", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def query_tenant_set(self) -> frozenset[str] | None:
        """``query_tenants`` as a set; None: any tenant."""
        return parse_tenants(self.query_tenants)

    @property
    def tenant_policy(self) -> TenantPolicy:
        """Which searches the query worker answers (``multi_tenancy``, ``query_tenants``)."""
        return TenantPolicy(required=self.multi_tenancy, allowed=self.query_tenant_set)

    @property
    def debezium_mapping(self) -> DebeziumMapping:
        """Columns of a Debezium row -> fields of a change event (the ``debezium_*`` settings)."""
        return DebeziumMapping(doc_id=self.debezium_doc_id, content=self.debezium_content, title=self.debezium_title,
                               version=self.debezium_version, tenant=self.debezium_tenant,
                               metadata=tuple(c.strip() for c in self.debezium_metadata.split(",") if c.strip()),
                               content_type=self.debezium_content_type)

    @cached_property
    def metadata_schema(self) -> dict[str, str]:
        """Declared metadata fields: name -> type."""
        return parse_metadata_fields(self.metadata_fields)

    @property
    def hnsw(self) -> HnswConfig:
        """The collection's HNSW index settings."""
        return HnswConfig(self.hnsw_ef, self.hnsw_ef_construction, self.hnsw_max_connections)

    @property
    def chunk_context(self) -> Context:
        """What the model sees ahead of each chunk's text (``embed_title``, ``embed_headings``)."""
        return Context(title=self.embed_title, headings=self.embed_headings)

    @cached_property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap list clients use."""
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @cached_property
    def kafka_access(self) -> KafkaAccess:
        """Bootstrap servers with the connection's security: what every Kafka client is built from."""
        return KafkaAccess(self.bootstrap_servers, self.kafka_security_protocol, self.kafka_sasl_mechanism,
                           self.kafka_sasl_username, self.kafka_sasl_password, self.kafka_ssl_cafile,
                           self.kafka_ssl_certfile, self.kafka_ssl_keyfile, self.kafka_ssl_key_password,
                           self.kafka_ssl_check_hostname)

    @cached_property
    def weaviate_url(self) -> str:
        return f"{'https' if self.weaviate_http_secure else 'http'}://{self.weaviate_host}:{self.weaviate_http_port}"

    @property
    def weaviate_headers(self) -> dict[str, str]:
        """HTTP headers of a REST call to Weaviate (the API key, if any)."""
        key = self.weaviate_api_key.get_secret_value()
        return {"Authorization": f"Bearer {key}"} if key else {}

    @cached_property
    def reply_topics_glob(self) -> str:
        """Where replies may go (see ``reply_topic_pattern``)."""
        return self.reply_topic_pattern or f"{self.topic_replies}*"

    def topics(self) -> list[str]:
        """Every topic freshet uses (created at start-up when missing)."""
        return [self.topic_changes, self.topic_requests, self.topic_replies, self.topic_applied,
                self.topic_dead_letter, self.topic_metrics, self.topic_generations]

    def as_env(self) -> dict[str, str]:
        """These settings as ``FRESHET_*`` variables, so a child process gets exactly them."""
        return {f"FRESHET_{name.upper()}": value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                for name, value in self.model_dump().items()}

    @cached_property
    def indexer_base_url(self) -> str:
        return self.indexer_url.rstrip("/") or f"http://127.0.0.1:{self.indexer_web_port}"

    def worker_url(self, role: str, path: str = "") -> str:
        """A worker's HTTP address as a browser on this machine reaches it."""
        host = "127.0.0.1" if self.web_bind in ("0.0.0.0", "") else self.web_bind
        return f"http://{host}:{self.worker_web_port(role)}{path}"

    def worker_web_port(self, role: str) -> int:
        return self.indexer_web_port if role == "indexer" else self.query_web_port
