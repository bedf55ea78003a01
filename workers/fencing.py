"""Fencing: once a changes partition may move to another indexer, its old owner writes nothing for it.

A unit of work (a micro-batch, a read-back page, a sweep of old chunks) takes a :class:`Lease` on
the partitions it touches: the consumer group generation and the partitions assigned under it.
Every write it makes (a Weaviate upsert, update or delete; a state, position, applied or progress
record) first checks the lease, inside the retry loop too: the lease holds only while no
rebalance has started, the generation is the same and the partitions are still assigned. A write
under a lease that no longer holds raises :class:`~freshet.errors.FencedError`; the unit of work
is dropped whole, nothing of it is acknowledged, and whoever owns the partition next reads those
records back from the last stored position (every write is idempotent).

Why the new owner cannot start before the old owner's last write (Kafka's eager rebalance, the
only protocol Faust speaks): a rebalance starts on every member by revoking all its partitions,
and a member gets its new assignment only after every member has rejoined, which each does only
after its revocation callback returned. The old owner's callback first marks the rebalance (every
later check fails), Faust then waits for the events its agents hold, and freshet's receiver waits
(:meth:`Fence.drain`) until no write that passed its check is still in flight. So every write of
the old owner ends before the new owner is assigned. The one way around it is an old owner that
is expelled from the group (it did not rejoin within the rebalance timeout) and still writes: a
process paused between its check and its write for longer than that timeout. A killed process
writes nothing more (a request already on the wire completes within the session timeout the new
owner waits). The architecture notes (docs/architecture.md, "Fencing") give the whole argument.

Each state and applied record carries the lease's generation and the writer in its headers
(``freshet.generation``, ``freshet.writer``), so the argument can be checked on the logs:
within one partition the generation never goes down (:func:`fence_violations`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from freshet.errors import FencedError
from workers.store import ChunkRecord, ChunkStore, StoredHit, StoreQuery

GENERATION_HEADER = "freshet.generation"
WRITER_HEADER = "freshet.writer"


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write for ``partitions``, granted under consumer group ``generation``."""

    generation: int
    partitions: frozenset[int]


_current: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("freshet_lease", default=None)


class Fence:
    """Grants leases and checks them before each write; counts the writes in flight.

    ``generation``, ``assignment`` and ``rebalancing`` read the consumer's live state (in the
    worker: Faust's ``consumer_generation_id``, the assigned changes partitions, ``app.rebalancing``).
    """

    def __init__(self, generation: Callable[[], int], assignment: Callable[[], Collection[int]],
                 rebalancing: Callable[[], bool], writer: str) -> None:
        self._generation = generation
        self._assignment = assignment
        self._rebalancing = rebalancing
        self.writer = writer
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.fenced = 0
        """Writes refused because their lease no longer held."""

    def _why_not(self, generation: int, partitions: Iterable[int]) -> str | None:
        if self._rebalancing():
            return "a rebalance has started"
        if self._generation() != generation:
            return f"the group moved from generation {generation} to {self._generation()}"
        lost = sorted(set(partitions) - set(self._assignment()))
        return f"partitions {lost} are not assigned here (with their state)" if lost else None

    @contextmanager
    def lease(self, partitions: Iterable[int]) -> Iterator[Lease]:
        """Hold a lease on ``partitions`` for the writes made inside the block (in this task and
        the tasks it starts); raises :class:`FencedError` if it cannot be had now."""
        lease = Lease(self._generation(), frozenset(partitions))
        self.check(lease)
        token = _current.set(lease)
        try:
            yield lease
        finally:
            _current.reset(token)

    def check(self, lease: Lease | None = None) -> Lease:
        """Raise :class:`FencedError` unless ``lease`` (default: the one held here) still holds."""
        lease = lease if lease is not None else _current.get()
        if lease is None:
            raise FencedError("a write outside any lease (a bug in the worker's wiring)")
        why = self._why_not(lease.generation, lease.partitions)
        if why is not None:
            self.fenced += 1
            raise FencedError(f"lease on partitions {sorted(lease.partitions)} (generation {lease.generation}) "
                              f"no longer holds: {why}")
        return lease

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Lease]:
        """Check the held lease, then count the write made inside the block as in flight."""
        lease = self.check()
        self._in_flight += 1
        self._idle.clear()
        try:
            yield lease
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def headers(self) -> list[tuple[str, bytes]]:
        """The headers every record written under the held lease carries."""
        lease = self.check()
        return [(GENERATION_HEADER, str(lease.generation).encode()), (WRITER_HEADER, self.writer.encode())]

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, timeout: float) -> bool:
        """Wait until no write that passed its check is still running; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def state_ownership(assigned: Iterable[tuple[str, int]], actives: Iterable[tuple[str, int]], *, source: str,
                    changelog: str) -> tuple[frozenset[int], frozenset[int]]:
    """(owned, stateless): the ``source`` partitions assigned to this consumer whose state changelog
    partition is one of the actives of Faust's assignment, and those whose is not.

    A source partition without its changelog partition has no recovered state here: Faust's
    assignor leaves a changelog out of the assignment when the group leader's metadata does not list
    it ("Ignoring missing topic", e.g. a changelog Faust created after the consumer subscribed), and
    then no recovery runs, so the local store may hold a previous owner's older states. Writing from
    them would pair stale states with a newer position (lost or stale documents). Only ``owned``
    partitions may be written for.
    """
    changes = {p for t, p in assigned if t == source}
    state = {p for t, p in actives if t == changelog}
    return frozenset(changes & state), frozenset(changes - state)


def header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


def fence_violations(records: Sequence[tuple[int, int, str | None, str | None]]) -> list[str]:
    """Writes that escaped their fence, from ``(partition, offset, generation, writer)`` of a topic's
    records in log order: within a partition, a record of a lower generation after a higher one.
    Records without a generation (from before fencing) are skipped."""
    highest: dict[int, tuple[int, str | None, int]] = {}
    out: list[str] = []
    for partition, offset, generation, writer in sorted(records, key=lambda r: (r[0], r[1])):
        if generation is None:
            continue
        gen = int(generation)
        top = highest.get(partition)
        if top is not None and gen < top[0]:
            out.append(f"partition {partition} offset {offset}: {writer} wrote under generation {gen} after "
                       f"{top[1]} wrote under generation {top[0]} (offset {top[2]})")
        elif top is None or gen > top[0]:
            highest[partition] = (gen, writer, offset)
    return out


class FencedStore:
    """A :class:`~workers.store.ChunkStore` whose every write checks the held lease first (reads do not)."""

    def __init__(self, store: ChunkStore, fence: Fence) -> None:
        self._store = store
        self._fence = fence

    async def start(self) -> None:
        await self._store.start()

    async def close(self) -> None:
        await self._store.close()

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        async with self._fence.writing():
            await self._store.upsert(records)

    async def update_properties(self, records: Sequence[ChunkRecord]) -> None:
        async with self._fence.writing():
            await self._store.update_properties(records)

    async def delete_ids(self, ids: Sequence[str], *, tenant: str | None = None) -> int:
        async with self._fence.writing():
            return await self._store.delete_ids(ids, tenant=tenant)

    async def delete_document(self, tenant: str | None, doc_id: str, *, keep: Sequence[str] = ()) -> int:
        async with self._fence.writing():
            return await self._store.delete_document(tenant, doc_id, keep=keep)

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        return await self._store.search(query)

    async def fetch(self, ids: Sequence[str], *, tenant: str | None = None,
                    with_vectors: bool = False) -> list[StoredHit]:
        return await self._store.fetch(ids, tenant=tenant, with_vectors=with_vectors)

    async def vectors(self, max_count: int, *, tenant: str | None = None) -> dict[str, list[float]] | None:
        return await self._store.vectors(max_count, tenant=tenant)
