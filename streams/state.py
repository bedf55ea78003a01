"""The indexer's state table, written so that a write is done only when Kafka has it.

A Faust table sends each change to its changelog with ``send_soon`` and only logs a failed send,
while later records still land: a position could then move past a state that was lost. Here a
write produces the changelog records itself, to the partition the caller names (the source
partition of the record that decided it, as Faust would), and sets the values in the table's local
store only once the broker acknowledged every record of the call, so nothing reads a state Kafka
does not have. A failed send is retried (the values are idempotent) until the broker takes it.

A record the broker refuses for good (over the topic's ``max.message.bytes``: a topic configured
below what freshet writes, since the size of a state is bounded by ``FRESHET_MAX_CHUNKS_PER_DOCUMENT``)
is the operator's to fix, not the event's: the write is logged (``state_write_refused``), counted
(``freshet_kafka_records_refused_total``) and retried with backoff, and the partition waits.

**The local store** (``FRESHET_STATE_STORE``) is Faust's in-memory store, rebuilt from the whole
changelog at every assignment, or its RocksDB store: one database per changelog partition that
also records the *persisted offset*, the last changelog offset it holds, so that an assignment
reads only the changelog records after it. Faust's own ways of writing to it do not fit here
(see :class:`RocksLocal`), so the writes go to the databases directly: each key to the database
of the changelog partition the caller names, in one atomic batch with the persisted offset, and
the offset moves only over records this process both saw acknowledged and wrote locally.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import structlog

from freshet.errors import TransientError
from streams.sending import RecordRefusedError, send_all
from workers import metrics
from workers.fencing import Fence
from workers.retry import until_done

log = structlog.get_logger(__name__)

Write = tuple[str, Any, int]
"""(key, JSON-able value, changelog partition)."""


class LocalStore(Protocol):
    """The worker's copy of the state table: reads, and writes of what Kafka acknowledged."""

    def get(self, key: str) -> Any: ...

    def items(self) -> Iterator[tuple[str, Any]]: ...

    def write(self, writes: Sequence[Write], acked: dict[int, list[int]]) -> None:
        """Set ``writes`` locally; ``acked`` = changelog partition -> offsets of their records."""

    def acked_late(self, partition: int, offset: int) -> None:
        """A record of ``writes`` already written was acknowledged after :meth:`write`."""


class MemoryLocal:
    """Faust's in-memory store: a dict, refilled from the whole changelog at each assignment."""

    def __init__(self, data: Any) -> None:
        self._data = data

    def get(self, key: str) -> Any:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def write(self, writes: Sequence[Write], acked: dict[int, list[int]]) -> None:
        for key, value, _ in writes:
            self._data[key] = value

    def acked_late(self, partition: int, offset: int) -> None:
        """Nothing to do: the memory store persists no offset."""


LOCAL_OFFSETS_MAX = 100_000
"""Offsets acknowledged and written locally that a partition keeps beyond its persisted offset
while a gap holds it (see :func:`advance`); past this many they are dropped (the next recovery
reads them again from the changelog)."""


def advance(persisted: int | None, local: set[int]) -> int | None:
    """The new persisted offset of a changelog partition, or None when it does not move.

    ``local`` holds the offsets of records that were acknowledged *and* written locally; the
    persisted offset moves over them only while they follow it without a gap (a gap is a record
    not written here, e.g. a send that timed out yet landed: skipping it at the next recovery would
    leave the local state behind the changelog; a held offset costs a longer recovery, never a
    wrong state). Offsets at or below the result are removed from ``local``.
    """
    start = at = -1 if persisted is None else persisted
    while at + 1 in local:
        at += 1
    local.difference_update([o for o in local if o <= at])
    return at if at > start else None


class RocksLocal:
    """Faust's RocksDB store (rocksdict), one database per changelog partition, used directly.

    Why not ``table.data[key] = value``: the store's ``_set`` takes the partition from the *current
    event* (``faust.streams.current_event``): outside an agent's iteration (a timer, like the sweep)
    it fails (``assert event is not None``), and inside one it writes to the partition of whichever
    event the stream yielded last, not the one the caller names. Its ``_get`` likewise reads only
    the current event's partition when there is one. Why not ``callback=table._on_changelog_sent``:
    it stores the persisted offset at the acknowledgement, before the value is set locally, so a
    ``kill -9`` in between leaves a database that claims a record it never got, and the next
    recovery skips it. Here each partition's keys and its persisted offset go in one ``WriteBatch``
    after every acknowledgement, so a crash at any point leaves the offset at a record the
    database holds, and the next assignment reads the rest from the changelog.

    Relies on these members of ``faust.stores.rocksdb.Store`` (faust-streaming 0.15.3, pinned):
    ``_db_for_partition``, ``_dbs``, ``_key_index``, ``_encode_key``/``_encode_value``/
    ``_decode_key``/``_decode_value`` and ``offset_key``; ``tests/unit/test_state_store.py`` checks them.
    """

    def __init__(self, store: Any) -> None:
        import rocksdict  # the faust-streaming[rocksdict] extra; imported only where RocksDB is chosen

        if not getattr(store, "use_rocksdict", False):
            raise TypeError(f"freshet needs Faust's rocksdict driver for the state table, not {store!r}")
        self._store = store
        self._batch = rocksdict.WriteBatch
        self._local: dict[int, set[int]] = {}
        """Changelog partition -> offsets acknowledged and written here, beyond the persisted one."""

    def get(self, key: str) -> Any:
        """The value of ``key`` in whichever open partition database holds it (a key lives in one)."""
        s = self._store
        raw = s._encode_key(key)
        first = s._key_index.get(raw)
        order = sorted(s._dbs, key=lambda p: p != first)
        for partition in order:
            value = s._dbs[partition].get(raw)
            if value is not None:
                s._key_index[raw] = partition
                return s._decode_value(value)
        return None

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every key and value of the open partition databases (active and standby; callers filter
        by partition). Each database is read through a RocksDB iterator, a consistent snapshot;
        consume the iterator before the next ``await`` (a revoked database is closed when dropped)."""
        s = self._store
        for partition in sorted(s._dbs):
            for raw_key, raw_value in s._dbs[partition].items():
                if raw_key != s.offset_key:
                    yield s._decode_key(raw_key), s._decode_value(raw_value)

    def persisted(self, partition: int) -> int | None:
        """The last changelog offset the partition's database holds (None: none yet)."""
        raw = self._store._db_for_partition(partition).get(self._store.offset_key)
        return int(raw) if raw is not None else None

    def write(self, writes: Sequence[Write], acked: dict[int, list[int]]) -> None:
        s = self._store
        grouped: dict[int, list[tuple[str, Any]]] = {}
        for key, value, partition in writes:
            grouped.setdefault(partition, []).append((key, value))
        for partition, pairs in grouped.items():
            db = s._db_for_partition(partition)  # opened at assignment; reopened only for a late write
            batch = self._batch(raw_mode=True)
            for key, value in pairs:
                raw = s._encode_key(key)
                if value is None:
                    batch.delete(raw)
                else:
                    batch.put(raw, s._encode_value(value))
                s._key_index[raw] = partition
            through = self._advance(partition, acked.get(partition, ()))
            if through is not None:
                batch.put(s.offset_key, str(through).encode())
            db.write(batch)

    def acked_late(self, partition: int, offset: int) -> None:
        """A record whose values are already written here was acknowledged only now (Faust runs the
        send callbacks from the event loop, possibly after the sender resumed): move the offset."""
        if partition not in self._store._dbs:
            return  # revoked meanwhile: the next owner reads the changelog
        through = self._advance(partition, (offset,))
        if through is not None:
            self._store._dbs[partition].put(self._store.offset_key, str(through).encode())

    def _advance(self, partition: int, offsets: Iterable[int]) -> int | None:
        local = self._local.setdefault(partition, set())
        local.update(offsets)
        persisted = self.persisted(partition)
        through = advance(persisted, local)
        if len(local) > LOCAL_OFFSETS_MAX:
            log.warning("state_offset_held", partition=partition, persisted=persisted, offsets=len(local),
                        why="a record not written here lies after it; the next recovery reads on from it")
            local.clear()
        return through


def local_store(table: Any) -> LocalStore:
    """The local side of ``table``: RocksDB when the table's store persists offsets, else memory."""
    from faust.stores.rocksdb import Store as RocksStore

    data = table.data
    return RocksLocal(data) if isinstance(data, RocksStore) else MemoryLocal(data)


class StateTable:
    """A Faust table whose writes are acknowledged by Kafka before they count as done; with a
    ``fence``, each write checks the caller's partition lease first and carries its headers."""

    def __init__(self, table: Any, fence: Fence | None = None) -> None:
        self._table = table
        self._fence = fence
        self._local: LocalStore | None = None

    @property
    def local(self) -> LocalStore:
        """Built on first use: Faust creates the table's store lazily, after the app is configured."""
        if self._local is None:
            self._local = local_store(self._table)
        return self._local

    def get(self, key: str) -> Any:
        return self.local.get(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return self.local.items()

    async def put(self, writes: Sequence[Write], *, what: str = "state_write") -> None:
        """Send every changelog record, wait for all their acknowledgements, then set each key locally
        (with RocksDB, together with the offset of the last record, see :class:`RocksLocal`)."""
        t = self._table
        acked: dict[int, list[int]] = {}
        written: list[bool] = []

        def on_acked(fut: Any) -> None:  # Faust calls it from the loop once the broker acknowledged the record
            meta = fut.result()
            if written:
                self.local.acked_late(meta.partition, meta.offset)
            else:
                acked.setdefault(meta.partition, []).append(meta.offset)

        messages = [{"key": key, "value": value, "partition": partition, "key_serializer": t.key_serializer,
                     "value_serializer": t.value_serializer, "callback": on_acked}
                    for key, value, partition in writes]

        async def once() -> None:
            try:
                await send_all(t.changelog_topic, messages, what=what, fence=self._fence)
            except RecordRefusedError as exc:
                metrics.KAFKA_REFUSED.labels(what).inc()
                log.error("state_write_refused", what=what, topic=exc.topic, records=len(messages), error=str(exc),
                          fix="raise the topic's max.message.bytes (and the broker's message.max.bytes); "
                              "this partition waits until Kafka takes the record")
                raise TransientError(str(exc)) from exc

        if messages:
            await until_done(once, what=what)
        self.local.write(writes, acked)
        written.append(True)
