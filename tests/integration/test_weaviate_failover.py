"""A store whose Weaviate node stops answering moves to the next node of the cluster.

The node here is a TCP path to the real server that the test cuts (tests/integration/netproxy.py):
for the worker it is a node gone dark; the same server, reached directly, is the next node.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from freshet.errors import StoreUnavailableError
from freshet.settings import Settings
from tests.integration.netproxy import Proxy
from tests.integration.test_weaviate_store import record
from workers.store import StoreQuery
from workers.weaviate_store import WeaviateChunkStore

pytestmark = pytest.mark.integration


def test_a_store_moves_to_the_next_node_when_its_own_stops_answering(isolated: Settings) -> None:
    s = isolated
    http, grpc = Proxy(s.weaviate_host, s.weaviate_http_port), Proxy(s.weaviate_host, s.weaviate_grpc_port)
    direct = (s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    vec = [1.0] + [0.0] * 383

    async def scenario() -> None:
        store = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port, collection=s.collection,
                                   timeout=5, failover=[direct])
        await store.start()
        assert store.node == f"127.0.0.1:{http.port}"
        await store.upsert([record("a", 0, "alpha", vec)])
        http.cut()
        grpc.cut()
        with pytest.raises(StoreUnavailableError):  # this call fails (the worker's retry loop waits it out) ...
            await store.upsert([record("b", 1, "beta", vec)])
        assert store.node == f"{s.weaviate_host}:{s.weaviate_http_port}"
        await store.upsert([record("b", 1, "beta", vec)])  # ... and its next attempt goes to the next node
        ids = {record("a", 0, "", vec).id, record("b", 1, "", vec).id}
        assert {h.id for h in await store.fetch(sorted(ids))} == ids
        await store.close()

        # a search that meets the dead node is answered from the next one
        reader = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port,
                                    collection=s.collection, timeout=5, failover=[direct])
        http.mend()
        grpc.mend()
        await reader.start()
        http.cut()
        grpc.cut()
        hits = await reader.search(StoreQuery(mode="vector", text="alpha", vector=vec, limit=5))
        assert {h.id for h in hits} == ids and reader.node == f"{s.weaviate_host}:{s.weaviate_http_port}"
        await reader.close()

        # a dead node is left within a few seconds even when no call reports it (a search cancelled
        # by its deadline never does)
        idle = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port,
                                  collection=s.collection, timeout=5, failover=[direct])
        http.mend()
        grpc.mend()
        await idle.start()
        http.cut()
        grpc.cut()
        for _ in range(40):
            if idle.node != f"127.0.0.1:{http.port}":
                break
            await asyncio.sleep(0.25)
        assert idle.node == f"{s.weaviate_host}:{s.weaviate_http_port}"
        await idle.close()

        # a store whose first node is down when it starts begins on the next one
        late = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port, collection=s.collection,
                                  timeout=5, failover=[direct])
        await late.start()
        assert late.node == f"{s.weaviate_host}:{s.weaviate_http_port}"
        await late.close()

        # with no other node, the fault is only waited out
        alone = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port, collection=s.collection,
                                   timeout=5)
        with pytest.raises(StoreUnavailableError, match="not reachable"):
            await alone.start()

    try:
        asyncio.run(scenario())
    finally:
        http.close()
        grpc.close()


#: The deadline the chaos tier's searches carry (tests/chaos/cluster/test_node_kills.py).
SEARCH_DEADLINE_S = 4.0


def test_a_search_in_flight_when_its_node_dies_is_answered_from_the_next_node_within_its_deadline(
        isolated: Settings) -> None:
    """weaviate-client retries a gRPC search on an unreachable node for many seconds; the search
    must not ride those retries out once the store has moved to another node."""
    s = isolated
    http, grpc = Proxy(s.weaviate_host, s.weaviate_http_port), Proxy(s.weaviate_host, s.weaviate_grpc_port)
    direct = (s.weaviate_host, s.weaviate_http_port, s.weaviate_grpc_port)
    vec = [1.0] + [0.0] * 383

    async def scenario() -> tuple[set[str], float, str]:
        store = WeaviateChunkStore(host="127.0.0.1", http_port=http.port, grpc_port=grpc.port, collection=s.collection,
                                   timeout=30, failover=[direct])
        await store.start()
        await store.upsert([record("a", 0, "alpha", vec)])
        http.cut()
        grpc.cut()
        started = time.monotonic()
        try:
            hits = await asyncio.wait_for(store.search(StoreQuery(mode="vector", text="alpha", vector=vec, limit=5)),
                                          SEARCH_DEADLINE_S)
        except TimeoutError:
            hits = []
        took, node = time.monotonic() - started, store.node
        await store.close()
        return {h.id for h in hits}, took, node

    try:
        found, took, node = asyncio.run(scenario())
    finally:
        http.close()
        grpc.close()
    assert node == f"{s.weaviate_host}:{s.weaviate_http_port}"
    assert found == {record("a", 0, "", vec).id}, f"no answer within {SEARCH_DEADLINE_S} s (took {took:.1f} s)"
