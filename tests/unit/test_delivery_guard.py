"""The delivery guard's arithmetic: which offsets were skipped, and when a tail is stalled."""

from workers.delivery import advanced, missing_ranges, stalled_tail


def test_a_hole_in_a_batch_is_found() -> None:
    # the case seen after a kill -9 and restart: Faust yielded 0..29, 31, 32 and acked 30 unseen
    assert missing_ranges(0, [*range(30), 31, 32]) == [(30, 31)]


def test_a_batch_that_starts_beyond_the_position_reveals_the_records_before_it() -> None:
    assert missing_ranges(10, [14, 15, 17]) == [(10, 14), (16, 17)]


def test_replays_below_the_position_are_not_gaps() -> None:
    assert missing_ranges(10, [3, 4, 10, 11]) == []
    assert missing_ranges(10, []) == []


def test_the_position_moves_past_the_highest_offset_only() -> None:
    assert advanced(10, [3, 12, 11]) == 13
    assert advanced(10, [3]) == 10


def test_a_tail_is_stalled_only_when_the_position_did_not_move_for_a_whole_period() -> None:
    assert not stalled_tail(5, 8, None)  # first look: records may be in flight
    assert not stalled_tail(5, 8, (4, 8))  # still moving
    assert not stalled_tail(5, 8, (5, 5))  # they arrived since the last check: in flight
    assert stalled_tail(5, 8, (5, 6))
    assert not stalled_tail(8, 8, (8, 8))  # nothing beyond the position
