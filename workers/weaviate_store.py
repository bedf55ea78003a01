"""The Weaviate adapter of :class:`workers.store.ChunkStore` (weaviate-client v4, async, gRPC).

Traps handled here: batch results carry per-object errors, and a per-object error is no proof
that the object is wrong (a READONLY shard fails a whole batch with one error on index 0, the other
objects "succeed" unwritten). Every failed write therefore ends in one of two errors, decided by
:mod:`workers.weaviate_faults`: :class:`freshet.errors.ObjectRejectedError` when Weaviate validated
named objects and found their event's metadata wrong (those events may be dead-lettered), else
:class:`freshet.errors.StoreUnavailableError` (down, read-only, memory pressure, a collection that
does not fit, 5xx, unknown: the caller waits with backoff and retries the whole call, which is
idempotent). Each failed call is
counted in ``freshet_weaviate_errors_total{kind}`` and logged once as ``weaviate_fault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import weaviate
import weaviate.classes as wvc
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.collections import CollectionAsync
from weaviate.collections.classes.config import VectorIndexConfigHNSW
from weaviate.exceptions import (
    InsufficientPermissionsError,
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateConnectionError,
    WeaviateInsertManyAllFailedError,
    WeaviateInvalidInputError,
    WeaviateTimeoutError,
)

from freshet.errors import ConfigError, StoreError, StoreUnavailableError
from schemas.search import BUILTIN_FILTER_FIELDS, AllOf, AnyOf, Condition, Filter
from workers import metrics
from workers.analysis import analyzed_query, keyword_text
from workers.fusion import FUSIONS, Candidate, fuse
from workers.store import ChunkRecord, HnswConfig, StoredHit, StoreQuery
from workers.tenancy import weaviate_tenant
from workers.weaviate_faults import (
    CLIENT_ERRORS,
    EVENT_PROPERTY_PREFIX,
    FaultKind,
    all_failed_messages,
    classify,
    classify_exception,
    judge,
    message_of,
    missing_shard,
    store_fault,
)

if TYPE_CHECKING:
    from freshet.settings import Settings

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=StoreError | StoreUnavailableError)
_UNREACHABLE: tuple[type[Exception], ...] = (*CLIENT_ERRORS, OSError, TimeoutError)
"""A failed call of the client, or the network under it."""

#: The one named vector of the collection.
VECTOR_NAME = "default"
_PROPERTIES = [
    wvc.config.Property(name="doc_id", data_type=wvc.config.DataType.TEXT,
                        tokenization=wvc.config.Tokenization.FIELD, index_searchable=False),
    wvc.config.Property(name="tenant", data_type=wvc.config.DataType.TEXT,
                        tokenization=wvc.config.Tokenization.FIELD, index_searchable=False),
    wvc.config.Property(name="title", data_type=wvc.config.DataType.TEXT),
    wvc.config.Property(name="heading_path", data_type=wvc.config.DataType.TEXT_ARRAY),
    wvc.config.Property(name="position", data_type=wvc.config.DataType.INT),
    wvc.config.Property(name="text", data_type=wvc.config.DataType.TEXT),
    wvc.config.Property(name="version", data_type=wvc.config.DataType.INT),
    wvc.config.Property(name="content_hash", data_type=wvc.config.DataType.TEXT,
                        tokenization=wvc.config.Tokenization.FIELD, index_searchable=False),
    wvc.config.Property(name="event_time", data_type=wvc.config.DataType.DATE),
    wvc.config.Property(name="indexed_at", data_type=wvc.config.DataType.DATE),
    wvc.config.Property(name="metadata_json", data_type=wvc.config.DataType.TEXT,
                        index_searchable=False, index_filterable=False),
    wvc.config.Property(name="keywords", data_type=wvc.config.DataType.TEXT,
                        tokenization=wvc.config.Tokenization.WHITESPACE, index_filterable=False),
]
#: The property BM25 searches: the title and text of a chunk as :func:`workers.analysis.keyword_text`
#: analyzes them (stemmed, without stop words), whitespace-tokenized.
KEYWORDS = "keywords"


def bm25_operator(name: str) -> Any:
    """``FRESHET_KEYWORD_OPERATOR`` as weaviate-client's: ``or`` (any query word) or ``and`` (every one)."""
    return wvc.query.BM25Operator.and_() if name == "and" else wvc.query.BM25Operator.or_(minimum_match=1)

#: Declared metadata fields are stored as top-level properties with this prefix (filterable).
METADATA_PREFIX = EVENT_PROPERTY_PREFIX
_METADATA_TYPES = {
    "text": wvc.config.DataType.TEXT, "text[]": wvc.config.DataType.TEXT_ARRAY,
    "int": wvc.config.DataType.INT, "number": wvc.config.DataType.NUMBER,
    "boolean": wvc.config.DataType.BOOL, "date": wvc.config.DataType.DATE,
}


def _metadata_properties(fields: Mapping[str, str]) -> list[wvc.config.Property]:
    return [
        wvc.config.Property(name=METADATA_PREFIX + name, data_type=_METADATA_TYPES[kind],
                            tokenization=wvc.config.Tokenization.FIELD if kind.startswith("text") else None,
                            index_searchable=False)
        for name, kind in sorted(fields.items())
    ]
_NO_TENANT = ""


WATCH_SECONDS = 1.0
"""How often a store with failover nodes checks that its node is live."""
LIVE_SECONDS = 3.0
"""How long a liveness check may take before the node counts as not live."""


class WeaviateChunkStore:
    """Chunks in one Weaviate collection (HNSW, cosine; BM25 over text and title).

    ``replication_factor`` is used when the store creates the collection (None: Weaviate's default,
    1) and checked against an existing one (a difference is logged, never changed: Weaviate cannot
    lower it, and raising it moves every shard). Every write, delete and read runs at
    ``consistency`` (QUORUM by default: with 3 replicas a read then overlaps every acknowledged write).
    ``hnsw`` builds the vector index of a collection the store creates; its search-time ``ef`` is
    set on an existing one at every start, and a different build is logged, never changed.

    With ``multi_tenancy`` the collection uses Weaviate's native multi-tenancy: each freshet tenant
    has a shard of its own (:func:`workers.tenancy.weaviate_tenant` names it), made by its first
    write (auto tenant creation and activation), and every call goes through
    ``collection.with_tenant(...)``; a shard that does not exist holds nothing. Weaviate fixes
    multi-tenancy when it makes a collection, so :meth:`start` refuses (:class:`ConfigError`) one
    made with the other setting.
    """

    def __init__(self, *, host: str, http_port: int, grpc_port: int, collection: str,
                 metadata_fields: Mapping[str, str] | None = None, replication_factor: int | None = None,
                 consistency: str = "QUORUM", timeout: float = 30.0,
                 failover: Sequence[tuple[str, int, int]] = (), bm25_k1: float = 1.2, bm25_b: float = 0.75,
                 keyword_operator: str = "or", fusion: str = "relative_score", hybrid_candidates: int = 50,
                 hnsw: HnswConfig | None = None, api_key: str = "", http_secure: bool = False,
                 grpc_secure: bool = False, multi_tenancy: bool = False) -> None:
        self._auth = Auth.api_key(api_key) if api_key else None
        self._secure = (http_secure, grpc_secure)
        self._metadata_fields = dict(metadata_fields or {})
        self._multi_tenancy = multi_tenancy
        self._hnsw = hnsw or HnswConfig()
        self._bm25 = (bm25_k1, bm25_b)
        self._operator = bm25_operator(keyword_operator)
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; one of {', '.join(FUSIONS)}")
        self._fusion = fusion
        self._candidates = hybrid_candidates
        self._timeout = timeout
        self._replication_factor = replication_factor
        self._consistency = wvc.config.ConsistencyLevel(consistency)
        self._nodes = [(host, http_port, grpc_port), *failover]
        self._node = 0
        """Index in ``_nodes`` of the node the client talks to."""
        self._moving = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._retired: list[weaviate.WeaviateAsyncClient] = []
        self._moved = asyncio.Event()
        """Set (and replaced) each time the store moves to another node: wakes the searches in flight."""
        self._collection_name = collection
        self._client: weaviate.WeaviateAsyncClient | None = None

    @property
    def node(self) -> str:
        """host:http_port of the Weaviate node in use."""
        host, http_port, _ = self._nodes[self._node]
        return f"{host}:{http_port}"

    async def start(self) -> None:
        """Connect (to the first node that answers, from the current one on) and create the
        collection if it is missing (idempotent)."""
        if self._client is not None:
            return
        errors: list[str] = []
        for step in range(len(self._nodes)):
            at = (self._node + step) % len(self._nodes)
            try:
                self._client = await self._connect(*self._nodes[at])
            except StoreUnavailableError as exc:
                errors.append(str(exc))
                continue
            if at != self._node:
                log.warning("weaviate_failover", collection=self._collection_name, to=f"{self._nodes[at][0]}:"
                            f"{self._nodes[at][1]}", away_from=self.node)
                self._node = at
            if len(self._nodes) > 1 and self._watchdog is None:
                self._watchdog = asyncio.create_task(self._watch(), name="weaviate-node-watchdog")
            return
        raise StoreUnavailableError("; ".join(errors))

    async def _watch(self) -> None:
        """Every WATCH_SECONDS, move on from a node that is no longer live, without waiting for a
        call to fail: a call to a dead node can hang until its caller's deadline cancels it (a
        search's few seconds), and a cancelled call never reports its fault."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            client = self._client
            try:
                if client is not None and not await self._live():
                    await self._fail_over(client)
            except Exception as exc:  # noqa: BLE001 - the watchdog outlives any one failed move: it tries again
                log.warning("weaviate_failover_failed", collection=self._collection_name, away_from=self.node,
                            error=f"{type(exc).__name__}: {message_of(exc)}"[:500])

    async def _connect(self, host: str, http_port: int, grpc_port: int, *,
                       setup: bool = True) -> weaviate.WeaviateAsyncClient:
        """A client of the node at ``host``; with ``setup``, the collection is created, completed and
        checked through it (a failover skips that: the schema is the cluster's, done at start, and
        schema calls may wait for a new Raft leader when the node left behind led it)."""
        client = weaviate.use_async_with_custom(
            http_host=host, http_port=http_port, http_secure=self._secure[0],
            grpc_host=host, grpc_port=grpc_port, grpc_secure=self._secure[1], auth_credentials=self._auth,
            additional_config=AdditionalConfig(timeout=Timeout(init=10, query=self._timeout, insert=self._timeout)),
        )
        try:
            try:
                await client.connect()
            except InsufficientPermissionsError:
                raise
            except UnexpectedStatusCodeError as exc:
                if exc.status_code in (401, 403):  # a wrong or missing key: no retry will help
                    await client.close()
                    raise ConfigError(f"Weaviate at {host}:{http_port} refused the API key "
                                      f"(FRESHET_WEAVIATE_API_KEY): HTTP {exc.status_code}") from exc
                raise WeaviateConnectionError(message_of(exc)) from exc
            except CLIENT_ERRORS as exc:  # e.g. WeaviateGRPCUnavailableError: the node is not there
                raise WeaviateConnectionError(message_of(exc)) from exc
            if setup:
                try:
                    if not await client.collections.exists(self._collection_name):
                        await self._create(client)
                    await self._check_tenancy(client)
                    await self._add_missing_properties(client)
                    await self._check_replication(client)
                    await self._check_bm25(client)
                    await self._check_hnsw(client)
                except InsufficientPermissionsError as exc:  # a read-only key (the query worker's): leave it be
                    log.info("collection_setup_skipped", collection=self._collection_name,
                             reason="the API key may not change the collection", detail=message_of(exc)[:200])
        except (WeaviateConnectionError, WeaviateTimeoutError, OSError) as exc:
            await client.close()
            raise StoreUnavailableError(
                f"Weaviate at {host}:{http_port} (gRPC {grpc_port}) is not reachable: {exc}") from exc
        except ConfigError:
            await client.close()
            raise
        return client

    async def _fail_over(self, failed: weaviate.WeaviateAsyncClient | None) -> None:
        """The node behind ``failed`` does not answer: connect to the next node that does (the next
        attempt of the failed call then goes there). Nothing happens when there is no other node,
        when another call moved already, or when no other node answers either."""
        if len(self._nodes) < 2:
            return
        async with self._moving:
            if self._client is not failed or failed is None:
                return
            for step in range(1, len(self._nodes)):
                at = (self._node + step) % len(self._nodes)
                try:
                    client = await self._connect(*self._nodes[at], setup=False)
                except StoreUnavailableError:
                    continue
                log.warning("weaviate_failover", collection=self._collection_name, away_from=self.node,
                            to=f"{self._nodes[at][0]}:{self._nodes[at][1]}")
                self._client, self._node = client, at
                self._moved.set()
                self._moved = asyncio.Event()
                # kept open until close(): calls still running on it (the client retries a call for
                # up to ~15 s) would fail with grpc's UsageError ("Channel is closed"), no Weaviate fault
                self._retired.append(failed)
                return

    async def _create(self, client: weaviate.WeaviateAsyncClient) -> None:
        try:
            await client.collections.create(
                self._collection_name,
                properties=[*_PROPERTIES, *_metadata_properties(self._metadata_fields)],
                vector_config=wvc.config.Configure.Vectors.self_provided(
                    name=VECTOR_NAME,
                    vector_index_config=wvc.config.Configure.VectorIndex.hnsw(
                        distance_metric=wvc.config.VectorDistances.COSINE, ef=self._hnsw.ef,
                        ef_construction=self._hnsw.ef_construction, max_connections=self._hnsw.max_connections,
                    ),
                ),
                inverted_index_config=wvc.config.Configure.inverted_index(
                    index_null_state=True, index_timestamps=False, bm25_k1=self._bm25[0], bm25_b=self._bm25[1],
                    stopwords_preset=wvc.config.StopwordsPreset.NONE,
                ),
                replication_config=self._replication_config(),
                multi_tenancy_config=wvc.config.Configure.multi_tenancy(
                    enabled=True, auto_tenant_creation=True, auto_tenant_activation=True)
                if self._multi_tenancy else None,
            )
            log.info("collection_created", collection=self._collection_name,
                     replication_factor=self._replication_factor or 1, multi_tenancy=self._multi_tenancy)
        except WeaviateBaseError as exc:
            # Another worker may have created it between exists() and create().
            if not await client.collections.exists(self._collection_name):
                raise StoreError(f"cannot create collection {self._collection_name!r}: {exc}") from exc

    def _replication_config(self) -> Any:
        """Replicas as configured; conflicts between replicas (a delete one node missed while down)
        are resolved by the latest change, which is what a replayed or re-created document needs."""
        factor = self._replication_factor
        if factor is None:
            return None
        strategy = wvc.config.ReplicationDeletionStrategy.TIME_BASED_RESOLUTION if factor > 1 else None
        return wvc.config.Configure.replication(factor=factor, deletion_strategy=strategy)

    async def _check_replication(self, client: weaviate.WeaviateAsyncClient) -> None:
        if self._replication_factor is None:
            return
        config = await client.collections.use(self._collection_name).config.get()
        actual = config.replication_config.factor
        if actual != self._replication_factor:
            log.warning("collection_replication_mismatch", collection=self._collection_name, actual=actual,
                        configured=self._replication_factor,
                        hint="Weaviate keeps a collection's replication factor: set "
                             "FRESHET_WEAVIATE_REPLICATION_FACTOR to match it, or start from an empty stack "
                             "(make clean) to create it anew")

    async def _check_tenancy(self, client: weaviate.WeaviateAsyncClient) -> None:
        """Refuse a collection whose multi-tenancy differs from the setting (Weaviate cannot switch
        it); on a multi-tenant one, turn on the automatic creation and activation of tenants."""
        coll = client.collections.use(self._collection_name)
        mt = (await coll.config.get()).multi_tenancy_config
        if mt.enabled != self._multi_tenancy:
            have, want = ("with", "without") if mt.enabled else ("without", "with")
            raise ConfigError(
                f"collection {self._collection_name!r} was made {have} Weaviate multi-tenancy, and "
                f"FRESHET_MULTI_TENANCY={str(self._multi_tenancy).lower()} asks {want} it; Weaviate cannot switch "
                f"an existing collection: set FRESHET_MULTI_TENANCY={str(mt.enabled).lower()}, or index into a new "
                "collection (FRESHET_COLLECTION) and publish the documents again")
        if mt.enabled and not (mt.auto_tenant_creation and mt.auto_tenant_activation):
            await coll.config.update(multi_tenancy_config=wvc.config.Reconfigure.multi_tenancy(
                auto_tenant_creation=True, auto_tenant_activation=True))
            log.info("auto_tenants_enabled", collection=self._collection_name,
                     were=(mt.auto_tenant_creation, mt.auto_tenant_activation))

    async def _add_missing_properties(self, client: weaviate.WeaviateAsyncClient) -> None:
        """A metadata field declared after the collection was created becomes a new property; so does
        the BM25 property of a collection made before it existed (a chunk written before then has no
        keywords, so keyword search misses it, until it is written again)."""
        coll = client.collections.use(self._collection_name)
        existing = {p.name for p in (await coll.config.get()).properties}
        keywords = [p for p in _PROPERTIES if p.name == KEYWORDS]
        for prop in [*keywords, *_metadata_properties(self._metadata_fields)]:
            if prop.name not in existing:
                await coll.config.add_property(prop)
                log.info("property_added", collection=self._collection_name, property=prop.name)

    async def _check_bm25(self, client: weaviate.WeaviateAsyncClient) -> None:
        """Set the collection's BM25 k1 and b to the configured ones (both may change at any time)."""
        coll = client.collections.use(self._collection_name)
        bm25 = (await coll.config.get()).inverted_index_config.bm25
        if (round(bm25.k1, 6), round(bm25.b, 6)) != (round(self._bm25[0], 6), round(self._bm25[1], 6)):
            await coll.config.update(inverted_index_config=wvc.config.Reconfigure.inverted_index(
                bm25_k1=self._bm25[0], bm25_b=self._bm25[1]))
            log.info("bm25_parameters_set", collection=self._collection_name, k1=self._bm25[0], b=self._bm25[1],
                     were=(bm25.k1, bm25.b))

    async def _check_hnsw(self, client: weaviate.WeaviateAsyncClient) -> None:
        """Set the HNSW index's search-time ef to the configured one (it may change at any time); a
        build setting (efConstruction, maxConnections) that differs is logged: Weaviate keeps it."""
        coll = client.collections.use(self._collection_name)
        config = (await coll.config.get()).vector_config
        index = config[VECTOR_NAME].vector_index_config if config and VECTOR_NAME in config else None
        if not isinstance(index, VectorIndexConfigHNSW):
            return
        if index.ef != self._hnsw.ef:
            await coll.config.update(vector_config=wvc.config.Reconfigure.Vectors.update(
                name=VECTOR_NAME, vector_index_config=wvc.config.Reconfigure.VectorIndex.hnsw(ef=self._hnsw.ef)))
            log.info("hnsw_ef_set", collection=self._collection_name, ef=self._hnsw.ef, was=index.ef)
        built = (index.ef_construction, index.max_connections)
        if built != (self._hnsw.ef_construction, self._hnsw.max_connections):
            log.warning("collection_hnsw_mismatch", collection=self._collection_name, actual=built,
                        configured=(self._hnsw.ef_construction, self._hnsw.max_connections),
                        hint="Weaviate fixes efConstruction and maxConnections when a collection is made: "
                             "index into a new collection (FRESHET_COLLECTION) to change them")

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for old in self._retired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), 5)
        self._retired.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def _collection(self) -> CollectionAsync[Any, Any]:
        if self._client is None:
            raise StoreUnavailableError("the Weaviate store is not started; call start() first")
        return self._client.collections.use(self._collection_name).with_consistency_level(self._consistency)

    def _at(self, tenant: str | None) -> CollectionAsync[Any, Any]:
        """The collection as ``tenant``'s calls see it: its shard in a multi-tenant store, else all of it."""
        if not self._multi_tenancy:
            return self._collection
        if tenant is None:
            raise StoreError(f"collection {self._collection_name!r} is multi-tenant: every read and write names "
                             "a tenant, and this one names none (a bug of freshet: events and searches without "
                             "a tenant are refused before they reach the store)")
        return self._collection.with_tenant(weaviate_tenant(tenant))

    def _no_shard(self, exc: BaseException) -> bool:
        return self._multi_tenancy and missing_shard(exc)

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Write every record, or raise: :class:`ObjectRejectedError` when Weaviate rejected some for
        their content (the others are written), :class:`StoreUnavailableError` for any other failure
        (nothing is taken as written)."""
        if not records:
            return
        what = f"writing {len(records)} chunks"
        groups: dict[str | None, list[int]] = {}  # one batch per tenant shard (one in all without tenancy)
        for i, r in enumerate(records):
            groups.setdefault(r.tenant if self._multi_tenancy else None, []).append(i)
        failures: dict[int, tuple[FaultKind, str]] = {}
        for tenant, group in groups.items():
            failures.update(await self._insert(tenant, [records[i] for i in group], group, what))
        if failures:
            raise self._counted(judge(records, failures, what))

    async def _insert(self, tenant: str | None, batch: Sequence[ChunkRecord], at: Sequence[int],
                      what: str) -> dict[int, tuple[FaultKind, str]]:
        """Write one batch into ``tenant``'s shard; the failures by index ``at[i]`` of the batch's i-th record."""
        try:
            result = await self._at(tenant).data.insert_many([self._to_object(r) for r in batch])
        except WeaviateInsertManyAllFailedError as exc:  # every object failed; the client kept only the messages
            messages = all_failed_messages(exc)
            return dict.fromkeys(at, (store_fault(messages) or "rejected", " | ".join(messages)))
        except WeaviateInvalidInputError as exc:  # the client refused to send it: our bug, not the event's
            raise StoreError(f"the Weaviate client refused {what} as malformed (a bug of freshet): {exc}") from exc
        except CLIENT_ERRORS as exc:
            raise await self._fault(exc, what) from exc
        return {at[i]: (classify(e.message), e.message) for i, e in result.errors.items()}

    async def update_properties(self, records: Sequence[ChunkRecord]) -> None:
        """Replace the properties of existing objects; raise as :meth:`upsert` does."""
        limit = asyncio.Semaphore(16)

        async def one(r: ChunkRecord) -> None:
            async with limit:
                await self._at(r.tenant).data.update(uuid=r.id, properties=self._properties(r))

        outcomes = await asyncio.gather(*(one(r) for r in records), return_exceptions=True)
        failures: dict[int, tuple[FaultKind, str]] = {}
        gone = {i for i, out in enumerate(outcomes) if isinstance(out, Exception) and self._no_shard(out)}
        if gone:  # the tenant's shard was dropped (freshet tenant delete): its deletes follow on the changes topic
            log.warning("tenant_shard_missing", collection=self._collection_name, what="updating properties",
                        chunks=len(gone))
        for i, out in enumerate(outcomes):
            if i in gone:
                continue
            if isinstance(out, UnexpectedStatusCodeError) and out.status_code == 404:
                failures[i] = ("server_error", f"chunk {records[i].id} is not in {self._collection_name!r} "
                               "(HTTP 404): the document's stored state is out of step with Weaviate")
            elif isinstance(out, _UNREACHABLE):
                failures[i] = (classify_exception(out), message_of(out))
            elif isinstance(out, BaseException):
                raise out
        if failures:
            raise self._counted(judge(records, failures, f"updating properties of {len(records)} chunks"))

    async def delete_ids(self, ids: Sequence[str], *, tenant: str | None = None) -> int:
        deleted = 0
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            deleted += await self._delete(wvc.query.Filter.by_id().contains_any(part), f"deleting {len(part)} chunks",
                                          tenant)
        return deleted

    async def _delete(self, where: Any, what: str, tenant: str | None) -> int:
        try:
            result = await self._at(tenant).data.delete_many(where=where)
        except CLIENT_ERRORS as exc:
            if self._no_shard(exc):
                return 0
            raise await self._fault(exc, what) from exc
        if result.failed:  # the reply has no reason (verbose=True breaks the client on a READONLY shard)
            kind = await self._shard_kind()
            cause = "a shard is read-only" if kind == "readonly" else "no reason given"
            raise self._counted(StoreUnavailableError(
                f"Weaviate failed {what}: {result.failed} of {result.matches} deletes failed ({cause}); will retry",
                kind=kind))
        return int(result.successful)

    async def _shard_kind(self) -> FaultKind:
        try:
            shards = await self._collection.config.get_shards()
        except _UNREACHABLE:
            return "unavailable"
        return "readonly" if any(sh.status == "READONLY" for sh in shards) else "server_error"

    async def _live(self) -> bool:
        try:
            return self._client is not None and bool(await asyncio.wait_for(self._client.is_live(), LIVE_SECONDS))
        except _UNREACHABLE:
            return False

    async def _fault(self, exc: BaseException, what: str) -> StoreUnavailableError:
        """A whole call failed: always the store's fault (no object is named, so none is to blame).
        An unreachable node is left for the next one that answers (``failover``)."""
        kind = classify_exception(exc)
        client = self._client
        if kind in ("rejected", "server_error"):
            kind = "server_error" if await self._live() else "unavailable"
        if kind == "unavailable" and not await self._live():
            await self._fail_over(client)
        return self._counted(StoreUnavailableError(f"Weaviate failed {what} ({kind}): {message_of(exc)}", kind=kind))

    async def _read_fault(self, exc: BaseException, what: str) -> StoreError | StoreUnavailableError:
        """A read failed: refused when Weaviate judged the query itself invalid, else unavailable."""
        if classify_exception(exc) == "rejected":
            return self._counted(StoreError(f"Weaviate refused {what}: {message_of(exc)}"))
        return await self._fault(exc, what)

    def _counted(self, err: E) -> E:
        """Count and log one failed call (a warning with its kind; the caller decides what comes next)."""
        kind = err.kind if isinstance(err, StoreUnavailableError) else "rejected"
        metrics.STORE_ERRORS.labels(kind).inc()
        log.warning("weaviate_fault", kind=kind, collection=self._collection_name, error=str(err)[:500])
        return err

    def _properties(self, r: ChunkRecord) -> dict[str, Any]:
        props: dict[str, Any] = {
            "doc_id": r.doc_id, "tenant": r.tenant or _NO_TENANT, "title": r.title or "",
            "heading_path": list(r.heading_path), "position": r.position, "text": r.text,
            "version": r.version, "content_hash": r.content_hash, "indexed_at": r.indexed_at,
            "metadata_json": json.dumps(r.metadata, sort_keys=True), KEYWORDS: keyword_text(r.title, r.text),
        }
        for name, value in r.metadata.items():
            if name in self._metadata_fields:
                props[METADATA_PREFIX + name] = value
        if r.event_time is not None:
            props["event_time"] = r.event_time
        return props

    def _to_object(self, r: ChunkRecord) -> wvc.data.DataObject[dict[str, Any], None]:
        return wvc.data.DataObject(properties=self._properties(r), uuid=r.id, vector={VECTOR_NAME: list(r.vector)})

    async def delete_document(self, tenant: str | None, doc_id: str, *, keep: Sequence[str] = ()) -> int:
        where = _doc_filter(tenant, doc_id)
        if keep:
            where = where & wvc.query.Filter.by_id().contains_none(list(keep))
        return await self._delete(where, f"deleting chunks of {doc_id!r}", tenant)

    async def fetch(self, ids: Sequence[str], *, tenant: str | None = None,
                    with_vectors: bool = False) -> list[StoredHit]:
        if not ids:
            return []
        try:
            res = await self._at(tenant).query.fetch_objects(
                filters=wvc.query.Filter.by_id().contains_any(list(ids)), limit=len(ids),
                include_vector=[VECTOR_NAME] if with_vectors else False)
        except CLIENT_ERRORS as exc:
            if self._no_shard(exc):
                return []
            raise await self._read_fault(exc, "fetching objects") from exc
        return [StoredHit(id=str(o.uuid), score=0.0, properties=dict(o.properties),
                          vector=list(o.vector[VECTOR_NAME]) if with_vectors and VECTOR_NAME in o.vector  # type: ignore[arg-type]
                          else None)
                for o in res.objects]

    async def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors of chunks whose content hash is one of ``hashes`` (what a new generation with
        the same model reuses instead of embedding); ``{}`` for a multi-tenant or missing collection.
        A hash stored in many objects takes one of them: equal hashes mean equal vectors."""
        if not hashes or self._multi_tenancy:
            return {}
        try:
            res = await self._collection.query.fetch_objects(
                filters=wvc.query.Filter.by_property("content_hash").contains_any(list(hashes)),
                limit=min(4 * len(hashes), 10_000), include_vector=[VECTOR_NAME], return_properties=["content_hash"])
        except CLIENT_ERRORS as exc:
            if "could not find class" in str(exc).lower() or "no such class" in str(exc).lower():
                return {}
            raise await self._read_fault(exc, "fetching vectors by content hash") from exc
        out: dict[str, list[float]] = {}
        for o in res.objects:
            if VECTOR_NAME in o.vector:
                out.setdefault(str(o.properties["content_hash"]), list(o.vector[VECTOR_NAME]))  # type: ignore[arg-type]
        return out

    async def vectors(self, max_count: int, *, tenant: str | None = None) -> dict[str, list[float]] | None:
        coll = self._at(tenant)
        try:
            total = (await coll.aggregate.over_all(total_count=True)).total_count or 0
            if total > max_count:
                return None
            out: dict[str, list[float]] = {}
            async for o in coll.iterator(include_vector=True, return_properties=[]):
                out[str(o.uuid)] = list(o.vector[VECTOR_NAME])  # type: ignore[arg-type]
        except CLIENT_ERRORS as exc:
            if self._no_shard(exc):
                return {}
            raise await self._read_fault(exc, "reading vectors") from exc
        return out

    def _filters(self, query: StoreQuery) -> Any:
        parts = []
        if query.tenant and not self._multi_tenancy:  # a multi-tenant store searches the tenant's shard alone
            parts.append(wvc.query.Filter.by_property("tenant").equal(query.tenant))
        if query.filters is not None:
            parts.append(to_weaviate_filter(query.filters, self._metadata_fields))
        return None if not parts else parts[0] if len(parts) == 1 else wvc.query.Filter.all_of(parts)

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        """Run ``query``; when the store moves to another node while it runs (weaviate-client retries
        a search on an unreachable node for many seconds) or the node fails it after a move, run it
        on the new node once more (a search is only a read: the caller's deadline bounds both)."""
        node, moved = self._node, self._moved
        call = asyncio.ensure_future(self._search(query))
        woken = asyncio.ensure_future(moved.wait())
        try:
            await asyncio.wait((call, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not call.done():  # moved away, or the caller gave up
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, StoreError, StoreUnavailableError):
                    await call
        if call.cancelled():
            return await self._search(query)
        try:
            return call.result()
        except StoreUnavailableError:
            if self._node == node:
                raise
            return await self._search(query)

    async def _search(self, query: StoreQuery) -> list[StoredHit]:
        filters = self._filters(query)
        coll = self._at(query.tenant)
        try:
            words = analyzed_query(query.text)
            if query.mode == "keyword":
                if not words:  # nothing but stop words and punctuation: no word to match
                    return []
                return [_keyword_hit(o) for o in (await self._bm25_side(coll, words, query.limit, filters)).objects]
            if query.mode == "vector" or not words:
                return [_vector_hit(o) for o in (await self._vector_side(coll, query, query.limit, filters)).objects]
            return await self._hybrid(coll, query, words, filters)
        except CLIENT_ERRORS as exc:
            if self._no_shard(exc):  # a tenant never written to (or deleted): nothing to find
                return []
            raise await self._read_fault(exc, f"running a {query.mode} search") from exc

    async def _hybrid(self, coll: CollectionAsync[Any, Any], query: StoreQuery, words: str,
                      filters: Any) -> list[StoredHit]:
        """Both sides over ``hybrid_candidates`` chunks each (at least the limit), fused here
        (:mod:`workers.fusion`) so that every hit carries a [0, 1] score and each side's own."""
        depth = max(query.limit, self._candidates)
        vec, kw = await asyncio.gather(self._vector_side(coll, query, depth, filters),
                                       self._bm25_side(coll, words, depth, filters))
        objects = {str(o.uuid): o for o in (*vec.objects, *kw.objects)}
        fused = fuse([Candidate(str(o.uuid), _similarity(o)) for o in vec.objects],
                     [Candidate(str(o.uuid), float(o.metadata.score or 0.0)) for o in kw.objects],
                     alpha=query.alpha, fusion=query.fusion or self._fusion, limit=query.limit)
        return [StoredHit(id=f.id, score=f.score, properties=dict(objects[f.id].properties),
                          vector_score=f.vector_score, keyword_score=f.keyword_score) for f in fused]

    async def _vector_side(self, coll: CollectionAsync[Any, Any], query: StoreQuery, limit: int,
                           filters: Any) -> Any:
        return await coll.query.near_vector(
            list(query.vector or []), target_vector=VECTOR_NAME, limit=limit, filters=filters,
            return_metadata=wvc.query.MetadataQuery(distance=True))

    async def _bm25_side(self, coll: CollectionAsync[Any, Any], words: str, limit: int, filters: Any) -> Any:
        return await coll.query.bm25(
            words, query_properties=[KEYWORDS], operator=self._operator, limit=limit, filters=filters,
            return_metadata=wvc.query.MetadataQuery(score=True))


def _condition(c: Condition, prop: str, kind: str) -> Any:
    """One :class:`Condition` as a Weaviate filter on property ``prop`` of type ``kind``."""
    f = wvc.query.Filter.by_property(prop)
    values: list[Any] = c.value if isinstance(c.value, list) else [c.value]
    if kind == "date":
        values = [datetime.fromisoformat(str(v)) for v in values]
    if prop == "tenant":
        values = [v or _NO_TENANT for v in values]
    v = values[0]
    if c.op == "in":
        return f.contains_any(values)
    if c.op == "eq":
        return f.contains_any([v]) if kind == "text[]" else f.equal(v)
    if c.op == "ne":
        return f.contains_none([v]) if kind == "text[]" else f.not_equal(v)
    return {"gt": f.greater_than, "gte": f.greater_or_equal, "lt": f.less_than, "lte": f.less_or_equal}[c.op](v)


def to_weaviate_filter(flt: Filter, metadata_schema: Mapping[str, str]) -> Any:
    """A request filter (already checked against the declared fields) as a Weaviate filter."""
    if isinstance(flt, AllOf):
        return wvc.query.Filter.all_of([to_weaviate_filter(sub, metadata_schema) for sub in flt.all_of])
    if isinstance(flt, AnyOf):
        return wvc.query.Filter.any_of([to_weaviate_filter(sub, metadata_schema) for sub in flt.any_of])
    if flt.field in BUILTIN_FILTER_FIELDS:
        return _condition(flt, flt.field, BUILTIN_FILTER_FIELDS[flt.field])
    return _condition(flt, METADATA_PREFIX + flt.field, metadata_schema[flt.field])


def sync_client(host: str, http_port: int, grpc_port: int, *, api_key: str = "", http_secure: bool = False,
                grpc_secure: bool = False) -> weaviate.WeaviateClient:
    """A connected synchronous client, for tools and tests (close it when done)."""
    return weaviate.connect_to_custom(http_host=host, http_port=http_port, http_secure=http_secure,
                                      grpc_host=host, grpc_port=grpc_port, grpc_secure=grpc_secure,
                                      auth_credentials=Auth.api_key(api_key) if api_key else None)


def client_for(settings: Settings) -> weaviate.WeaviateClient:
    """A connected synchronous client with the settings' node, key and TLS (close it when done)."""
    s = settings
    return sync_client(s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port,
                       api_key=s.weaviate_api_key.get_secret_value(), http_secure=s.weaviate_http_secure,
                       grpc_secure=s.weaviate_grpc_secure)


def store_for(settings: Settings, **overrides: Any) -> WeaviateChunkStore:
    """The chunk store of ``settings`` (``overrides``: constructor arguments to change)."""
    s = settings
    args: dict[str, Any] = dict(
        host=s.weaviate_host, http_port=s.weaviate_http_port, grpc_port=s.weaviate_grpc_port, collection=s.collection,
        metadata_fields=s.metadata_schema, replication_factor=s.weaviate_replication_factor,
        consistency=s.weaviate_consistency, timeout=s.weaviate_timeout_seconds, failover=s.weaviate_nodes[1:],
        bm25_k1=s.bm25_k1, bm25_b=s.bm25_b, keyword_operator=s.keyword_operator, fusion=s.hybrid_fusion,
        hybrid_candidates=s.hybrid_candidates, hnsw=s.hnsw, api_key=s.weaviate_api_key.get_secret_value(),
        http_secure=s.weaviate_http_secure, grpc_secure=s.weaviate_grpc_secure, multi_tenancy=s.multi_tenancy)
    args.update(overrides)
    return WeaviateChunkStore(**args)


def _doc_filter(tenant: str | None, doc_id: str) -> Any:
    return (wvc.query.Filter.by_property("doc_id").equal(doc_id)
            & wvc.query.Filter.by_property("tenant").equal(tenant or _NO_TENANT))


def _similarity(obj: Any) -> float:
    """Cosine similarity from Weaviate's cosine distance."""
    return 1.0 - float(obj.metadata.distance) if obj.metadata.distance is not None else 0.0


def _vector_hit(obj: Any) -> StoredHit:
    sim = _similarity(obj)
    return StoredHit(id=str(obj.uuid), score=sim, properties=dict(obj.properties), vector_score=sim)


def _keyword_hit(obj: Any) -> StoredHit:
    bm25 = float(obj.metadata.score or 0.0)
    return StoredHit(id=str(obj.uuid), score=bm25, properties=dict(obj.properties), keyword_score=bm25)
