"""The Weaviate store's node watchdog keeps watching after a failed move.

(CI of the cluster chaos tier: the next node's schema call timed out while Weaviate elected a new
Raft leader; the exception ended the watchdog task, and query-2 stayed on the dead node for the
whole outage: 62 of 122 searches timed out.) The calls to Weaviate are replaced here: what is
tested is the loop around them, not Weaviate (tests/integration/test_weaviate_failover.py moves a
real store between real paths).
"""

from __future__ import annotations

import asyncio

import pytest
from weaviate.exceptions import WeaviateTimeoutError

from workers import weaviate_store
from workers.weaviate_store import WeaviateChunkStore


def test_a_failed_move_does_not_end_the_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weaviate_store, "WATCH_SECONDS", 0.01)
    store = WeaviateChunkStore(host="127.0.0.1", http_port=1, grpc_port=2, collection="C",
                               failover=[("127.0.0.1", 3, 4)])
    moves: list[int] = []

    async def dead() -> bool:
        return False

    async def fail_over(client: object) -> None:
        moves.append(1)
        if len(moves) == 1:
            raise WeaviateTimeoutError("Collection may not exist.")

    monkeypatch.setattr(store, "_live", dead)
    monkeypatch.setattr(store, "_fail_over", fail_over)
    store._client = object()  # type: ignore[assignment]

    async def scenario() -> bool:
        watchdog = asyncio.create_task(store._watch())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(moves) >= 3:
                break
        alive = not watchdog.done()
        watchdog.cancel()
        return alive

    assert asyncio.run(scenario())
    assert len(moves) >= 3
