"""The workload generator is pure and seeded, and its expected state follows the contract's rules."""

from __future__ import annotations

from tests.chaos.workload import GOOD_PREFIX, KINDS, generate


def test_same_seed_same_stream_and_state() -> None:
    a, b = generate(800, seed=7), generate(800, seed=7)
    assert [(r.key, r.value) for r in a.records] == [(r.key, r.value) for r in b.records]
    assert a.final == b.final
    assert [(r.key, r.value) for r in generate(800, seed=8).records] != [(r.key, r.value) for r in a.records]


def test_every_kind_of_change_is_in_the_mix() -> None:
    wl = generate(2000, seed=1)
    assert len(wl.records) == 2000
    assert set(wl.kinds) == set(KINDS)
    assert all(r.event is None or (r.event.event_id or "").startswith(GOOD_PREFIX) for r in wl.records)


def _fold(records):  # type: ignore[no-untyped-def]
    """The contract's rules, replayed over the records (a second, plain reading of them)."""
    highest: dict[str, int] = {}
    state: dict[str, object] = {}
    for r in records:
        if r.event is None:
            state[r.key] = None
            continue
        if r.event.version > highest.get(r.key, -1):
            highest[r.key] = r.event.version
            state[r.key] = None if r.event.op == "delete" else r.event
    return highest, state


def test_expected_state_is_the_fold_of_the_stream() -> None:
    wl = generate(3000, seed=3)
    highest, state = _fold(wl.records)
    assert set(wl.final) == set(state)
    for key, f in wl.final.items():
        assert f.version == highest.get(key, -1)
        assert f.deleted == (state[key] is None)
        assert f.event == state[key]


def test_stale_and_duplicate_events_never_win() -> None:
    wl = generate(3000, seed=5)
    winners = {id(f.event) for f in wl.final.values() if f.event is not None}
    for r in wl.records:
        if r.kind == "stale":
            assert id(r.event) not in winners
    assert wl.kinds["recreate"] > 0 and wl.kinds["tombstone"] > 0 and wl.live
