"""Concurrent query embeddings share model calls, and each caller gets its own vector."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from workers.embedding import BatchingEmbedder, Vector


class CountingEmbedder:
    """An in-process stand-in of the Embedder protocol that records each call's size."""

    model_id = "counting"
    max_tokens = 256

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        self.calls.append(len(texts))
        if self.fail:
            raise RuntimeError("model broke")
        return [[float(len(t))] for t in texts]


def test_concurrent_callers_share_calls_and_get_their_own_vectors() -> None:
    model = CountingEmbedder()

    async def scenario() -> list[Vector]:
        batcher = BatchingEmbedder(model)
        return await asyncio.gather(*(batcher.embed("x" * n) for n in range(1, 9)))

    assert asyncio.run(scenario()) == [[float(n)] for n in range(1, 9)]
    assert sum(model.calls) == 8 and len(model.calls) <= 2


def test_a_model_failure_reaches_every_caller_and_the_next_call_works() -> None:
    model = CountingEmbedder(fail=True)

    async def scenario() -> Vector:
        batcher = BatchingEmbedder(model)
        results = await asyncio.gather(batcher.embed("a"), batcher.embed("b"), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        model.fail = False
        return await batcher.embed("abc")

    assert asyncio.run(scenario()) == [3.0]
