import asyncio
from datetime import UTC, datetime

import pytest

from freshet.errors import FencedError
from tests.unit.fakes import DictStore
from workers.fencing import GENERATION_HEADER, Fence, FencedStore, fence_violations, header, state_ownership
from workers.store import ChunkRecord


class Group:
    """The consumer's live state, as the fence reads it."""

    def __init__(self) -> None:
        self.generation, self.assigned, self.rebalancing = 7, {0, 1}, False

    def fence(self) -> Fence:
        return Fence(lambda: self.generation, lambda: self.assigned, lambda: self.rebalancing, writer="w1")


def record(cid: str) -> ChunkRecord:
    return ChunkRecord(id=cid, doc_id="d", tenant=None, title=None, heading_path=(), position=0, text="text",
                       version=1, content_hash="h", vector=[0.0], metadata={}, event_time=None,
                       indexed_at=datetime.now(UTC))


@pytest.mark.parametrize("change", ["rebalance", "generation", "unassigned"])
def test_a_lease_stops_holding_when_the_group_moves(change: str) -> None:
    group = Group()
    fence = group.fence()
    with fence.lease([0, 1]) as lease:
        assert fence.check() == lease and (GENERATION_HEADER, b"7") in fence.headers()
        if change == "rebalance":
            group.rebalancing = True
        elif change == "generation":
            group.generation = 8
        else:
            group.assigned = {0}
        with pytest.raises(FencedError):
            fence.check()
    assert fence.fenced == 1


def test_no_lease_is_granted_on_a_partition_not_assigned_or_while_rebalancing() -> None:
    group = Group()
    with pytest.raises(FencedError), group.fence().lease([2]):
        pass
    group.rebalancing = True
    with pytest.raises(FencedError), group.fence().lease([0]):
        pass


def test_a_fenced_store_writes_only_under_a_lease_that_holds() -> None:
    group = Group()
    fence = group.fence()
    inner = DictStore()
    store = FencedStore(inner, fence)

    async def run() -> None:
        with pytest.raises(FencedError):  # outside any lease: a wiring bug, refused
            await store.upsert([record("a")])
        with fence.lease([0]):
            await store.upsert([record("b")])
            group.rebalancing = True
            with pytest.raises(FencedError):
                await store.upsert([record("c")])
            with pytest.raises(FencedError):
                await store.delete_ids(["b"])

    asyncio.run(run())
    assert set(inner.objects) == {"b"}


def test_drain_waits_for_the_write_in_flight() -> None:
    group = Group()
    fence = group.fence()
    order: list[str] = []

    async def slow_write() -> None:
        with fence.lease([0]):
            async with fence.writing():
                order.append("write started")
                await asyncio.sleep(0.2)
                order.append("write ended")

    async def run() -> None:
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.05)
        group.rebalancing = True
        assert fence.in_flight == 1
        assert await fence.drain(timeout=5)
        order.append("drained")
        await task

    asyncio.run(run())
    assert order == ["write started", "write ended", "drained"]


def test_drain_gives_up_after_its_timeout() -> None:
    group = Group()
    fence = group.fence()

    async def run() -> bool:
        with fence.lease([0]):
            async with fence.writing():
                return await fence.drain(timeout=0.05)

    assert asyncio.run(run()) is False


def test_fence_violations_are_lower_generations_after_higher_ones_in_a_partition() -> None:
    ok = [(0, 1, "5", "a"), (0, 2, "6", "b"), (1, 1, "5", "a"), (0, 3, "6", "b"), (0, 4, None, None), (0, 5, "7", "a")]
    assert fence_violations(ok) == []
    bad = [*ok, (0, 6, "6", "b")]
    problems = fence_violations(bad)
    assert len(problems) == 1 and "generation 6 after a wrote under generation 7" in problems[0]
    assert header([("x", b"1"), (GENERATION_HEADER, b"9")], GENERATION_HEADER) == "9"
    assert header(None, GENERATION_HEADER) is None


def test_a_partition_assigned_without_its_state_changelog_is_not_owned() -> None:
    # the cluster chaos run that lost documents: Faust's leader did not see the changelog topic
    # ("Ignoring missing topic"), assigned changes partitions without it, no recovery ran, and the
    # new owner wrote from a previous owner's stale local states
    assigned = {("freshet.changes", 0), ("freshet.changes", 1), ("freshet.changes", 2), ("other", 3)}
    actives = {("freshet.changes", 0), ("freshet.changes", 1), ("freshet.changes", 2),
               ("freshet-indexer-doc-state-changelog", 0), ("freshet-indexer-doc-state-changelog", 2),
               ("freshet-indexer-doc-state-changelog", 3)}
    owned, stateless = state_ownership(assigned, actives, source="freshet.changes",
                                       changelog="freshet-indexer-doc-state-changelog")
    assert owned == {0, 2} and stateless == {1}
    group = Group()
    group.assigned = set(owned)
    with pytest.raises(FencedError, match=r"\[1\] are not assigned here"), group.fence().lease([0, 1]):
        pass
    with group.fence().lease([0, 2]):
        pass
