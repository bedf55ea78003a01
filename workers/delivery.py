"""Delivery guard: which offsets of a partition the indexer has not seen, though it should have.

Faust's consumer can acknowledge records its streams never yielded (records fetched around a
rebalance or a recovery are skipped *and* acked, and its commit then moves past them), which would
lose events for good. The indexer therefore keeps its own position per partition of the changes
topic (the offset after the last record it handled, in a Faust table, so it survives restarts) and
checks each batch against it: offsets at or above that position that are missing below the
highest offset in the batch are read back from Kafka and handled with the batch. A timer does the
same for the tail of a partition when nothing arrives although the log has more.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Positions live in the indexer's state table under these keys (``\x00position/<partition>``), so a
#: position and the states it covers go to the same changelog topic-partition, in order: a crash can
#: lose the tail of that log, never a state while keeping a later position.
POSITION_PREFIX = "\x00position/"


def position_key(partition: int) -> str:
    return f"{POSITION_PREFIX}{partition}"


def missing_ranges(done: int, offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Half-open ranges ``[start, stop)`` at or above ``done`` and below ``max(offsets)`` not in ``offsets``.

    ``done`` is the offset after the last one handled; offsets below it are replays (handled
    again, harmlessly: every write is idempotent and older versions are skipped as stale).
    """
    ahead = sorted({o for o in offsets if o >= done})
    out: list[tuple[int, int]] = []
    expected = done
    for o in ahead:
        if o > expected:
            out.append((expected, o))
        expected = o + 1
    return out


def advanced(done: int, offsets: Iterable[int]) -> int:
    """The position after handling ``offsets`` (and every gap before them)."""
    return max([done, *(o + 1 for o in offsets)])


def stalled_tail(done: int, end: int, previous: tuple[int, int] | None) -> bool:
    """True when the log holds records from ``done`` on, already did at the previous check
    (``previous`` = the position and end offset then), and the position has not moved since: the
    records were skipped, not merely in flight."""
    return previous is not None and end > done and previous[0] == done and previous[1] > done
