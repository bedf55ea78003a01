"""The state table's local RocksDB side: each key in the named partition's database, the persisted
offset moved with the values (atomically) and only over records written here.

Uses Faust's real RocksDB store (rocksdict) on a temporary directory; the app never connects."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from freshet.settings import Settings
from streams.app import create_app
from streams.state import LOCAL_OFFSETS_MAX, MemoryLocal, RocksLocal, StateTable, advance, local_store


def table_in(datadir: Path, store: str = "rocksdb://") -> Any:
    app = faust.App("test-state", broker="kafka://127.0.0.1:1", store=store, datadir=str(datadir), autodiscover=False)
    return app.Table("doc-state", partitions=4)


def tp(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def test_faust_relies_on_what_rocks_local_uses(tmp_path: Path) -> None:
    store = table_in(tmp_path).data
    for name in ("_db_for_partition", "_dbs", "_key_index", "_encode_key", "_encode_value", "_decode_key",
                 "_decode_value", "offset_key", "use_rocksdict", "persisted_offset"):
        assert hasattr(store, name), name
    assert store.use_rocksdict


def test_faust_set_outside_an_event_fails(tmp_path: Path) -> None:
    """Why StateTable does not write ``table.data[key] = value``: Faust takes the partition from the
    current event, and a timer (the sweep) has none."""
    table = table_in(tmp_path)
    with pytest.raises(AssertionError):
        table.data["k"] = {"v": 1}


def test_each_key_goes_to_the_named_partition_with_its_offset(tmp_path: Path) -> None:
    table = table_in(tmp_path)
    local = local_store(table)
    assert isinstance(local, RocksLocal)
    local.write([("a", {"v": 1}, 0), ("b", {"v": 2}, 3), ("\x00position/3", 17, 3)], {0: [0], 3: [0, 1]})
    store = table.data
    assert store._db_for_partition(0).get(b'"a"') == b'{"v":1}'
    assert store._db_for_partition(3).get(b'"b"') == b'{"v":2}'
    assert store._db_for_partition(0).get(b'"b"') is None
    assert (table.persisted_offset(tp(table, 0)), table.persisted_offset(tp(table, 3))) == (0, 1)
    assert local.get("b") == {"v": 2} and local.get("\x00position/3") == 17 and local.get("zz") is None
    assert sorted(local.items()) == [("\x00position/3", 17), ("a", {"v": 1}), ("b", {"v": 2})]


def test_a_gap_holds_the_persisted_offset_but_the_values_are_written(tmp_path: Path) -> None:
    table = table_in(tmp_path)
    local = local_store(table)
    local.write([("a", 1, 0)], {0: [0, 1, 2]})
    local.write([("a", 2, 0)], {0: [4]})  # offset 3 was not written here (a send that landed unseen)
    assert local.get("a") == 2 and table.persisted_offset(tp(table, 0)) == 2
    local.write([("a", 3, 0)], {0: [5]})  # still held: 3 must be read from the changelog at recovery
    assert table.persisted_offset(tp(table, 0)) == 2


def test_an_acknowledgement_after_the_write_moves_the_offset(tmp_path: Path) -> None:
    """Faust runs the send callbacks from the loop: the sender may resume (and write) before some run."""
    table = table_in(tmp_path)
    local = local_store(table)
    local.write([("a", 1, 1), ("b", 1, 1), ("c", 1, 1)], {1: [0]})
    assert table.persisted_offset(tp(table, 1)) == 0
    local.acked_late(1, 2)  # out of order: 1 is still missing
    assert table.persisted_offset(tp(table, 1)) == 0
    local.acked_late(1, 1)
    assert table.persisted_offset(tp(table, 1)) == 2


def test_a_long_held_offset_forgets_what_it_waits_for(tmp_path: Path) -> None:
    table = table_in(tmp_path)
    local = local_store(table)
    local.write([("a", 1, 0)], {0: [0]})
    local.write([("a", 2, 0)], {0: list(range(2, LOCAL_OFFSETS_MAX + 3))})
    assert table.persisted_offset(tp(table, 0)) == 0
    local.acked_late(0, 1)  # the gap is filled, but the offsets after it were dropped
    assert table.persisted_offset(tp(table, 0)) == 1


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    table = table_in(tmp_path)
    local_store(table).write([("a", {"v": 1}, 2)], {2: [0, 1, 2, 3, 4, 5, 6]})
    table.data._dbs.clear()  # what Faust's stop does: the databases are dropped, not closed
    import gc

    gc.collect()
    again = table_in(tmp_path)
    again.data._db_for_partition(2)  # opened by Faust at assignment
    assert again.persisted_offset(tp(again, 2)) == 6
    assert local_store(again).get("a") == {"v": 1}


@pytest.mark.parametrize(("persisted", "local", "expected", "left"), [
    (None, {0, 1, 2}, 2, set()),  # a new partition: from offset 0
    (None, {3}, None, {3}),  # records before 3 never seen here
    (9, {10, 11}, 11, set()),
    (9, {11}, None, {11}),  # 10 is missing
    (9, {10, 12}, 10, {12}),
    (9, set(), None, set()),
    (9, {8, 9}, None, set()),  # nothing new
])
def test_advance(persisted: int | None, local: set[int], expected: int | None, left: set[int]) -> None:
    assert advance(persisted, local) == expected
    assert local == left


def test_the_store_is_a_setting(tmp_path: Path) -> None:
    for choice, url, kind in (("rocksdb", "rocksdb:", RocksLocal), ("memory", "memory:", MemoryLocal)):
        settings = Settings(home=tmp_path / choice, state_store=choice)  # type: ignore[arg-type]
        app, _ = create_app(settings, "indexer")
        assert str(app.conf.store) == url
        assert Path(app.conf.datadir) == tmp_path / choice / "workers" / "indexer" / app.conf.id
        assert isinstance(StateTable(app.Table("doc-state", partitions=2)).local, kind)
    assert Settings().state_store == "rocksdb"


class _LateCallbacks:
    """A changelog topic whose send callbacks run after the sender has resumed (as Faust's may):
    each record is acknowledged at once, its callback only when the test calls :meth:`release`."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self.held: list[Any] = []

    def get_topic_name(self) -> str:
        return "late-callbacks"

    async def send(self, *, partition: int, callback: Any, **_: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        meta = SimpleNamespace(partition=partition, offset=self.next.get(partition, 0))
        self.next[partition] = meta.offset + 1
        fut.set_result(meta)
        self.held.append(lambda: callback(SimpleNamespace(result=lambda: meta)))
        return fut

    def release(self) -> None:
        for run in self.held:
            run()
        self.held.clear()


def test_put_writes_first_and_moves_the_offset_when_the_late_acknowledgements_arrive(tmp_path: Path) -> None:
    table = table_in(tmp_path)
    topic = table.changelog_topic = _LateCallbacks()
    states = StateTable(table)

    async def scenario() -> tuple[int | None, int | None]:
        await states.put([("a", {"v": 1}, 2), ("b", {"v": 2}, 2), ("\x00position/2", 9, 2)])
        before = table.persisted_offset(tp(table, 2))
        topic.release()
        return before, table.persisted_offset(tp(table, 2))

    before, after = asyncio.run(scenario())
    assert states.get("b") == {"v": 2} and states.get("\x00position/2") == 9
    assert before is None and after == 2
