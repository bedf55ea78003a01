from freshet.client import Position, Session
from schemas.search import OffsetFence, SearchReply, ViewPosition


def reply(*through: tuple[int, int]) -> SearchReply:
    return SearchReply(request_id="r", status="ok", view=[ViewPosition(partition=p, through=t) for p, t in through])


def test_a_new_session_fences_nothing() -> None:
    assert Session().fence() is None


def test_the_fence_keeps_the_highest_position_seen_per_partition() -> None:
    s = Session()
    s.saw_reply(reply((0, 10), (1, 4)))
    s.saw_reply(reply((0, 7), (1, 9), (2, 0)))  # an older view of partition 0 does not move it back
    s.saw_write(Position("freshet.changes", 2, 5))  # its own write at offset 5 must be seen: through 6
    assert s.fence() == [OffsetFence(partition=0, offset=9), OffsetFence(partition=1, offset=8),
                         OffsetFence(partition=2, offset=5)]
