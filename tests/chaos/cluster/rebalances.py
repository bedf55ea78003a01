"""Rebalances of the indexers' consumer group, read from the indexers' own logs.

Faust logs ``generation id N app consumers id N`` on every member each time the group completes a
rebalance and hands out assignments (``faust.tables.recovery``), then the changelog partitions the
member now owns (``Highwater for active changelog partitions``: a table, one row per partition;
the state changelog is partitioned like the changes topic). The generation is Kafka's own counter
of the group's rebalances, so ``last - first`` generations is the number of rebalances between
them, including ones no log shows (a member expelled mid-round, a round interrupted by the next
join); the tables say which partitions changed owner.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_GENERATION = re.compile(r"^generation id (\d+) ")
_ROW = re.compile(r"^\|[^|]*\|\s*(\d+)\s*\|")


@dataclass
class Rebalances:
    """What the logs show after ``since`` (epoch seconds)."""

    before: int | None = None
    """The generation in force at ``since`` (None: none logged before it)."""
    generations: list[int] = field(default_factory=list)
    """Distinct generations logged after ``since``, ascending."""
    moves: int = 0
    """Partition hand-overs: a partition owned by another worker than in the previous logged generation."""
    moves_until: int = 0
    """Hand-overs logged before ``until`` (while the stream was still being published)."""
    idle: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Worker -> (generations it was assigned no active partition in, generations it took part in)."""

    @property
    def count(self) -> int:
        """Rebalances after ``since``: generations the group went through (Kafka's counter)."""
        if not self.generations:
            return 0
        first = self.before if self.before is not None else self.generations[0] - 1
        return self.generations[-1] - first

    def text(self) -> str:
        if not self.generations:
            return "no rebalance logged"
        span = f"generation {self.before if self.before is not None else '?'} -> {self.generations[-1]}"
        idle = ", ".join(f"{w} in {n} of {m}" for w, (n, m) in sorted(self.idle.items()) if n)
        return (f"{self.count} rebalances ({span}; {len(self.generations)} generations logged with assignments); "
                f"{self.moves} partition hand-overs, {self.moves_until} of them while publishing; no active "
                f"partition: {idle or 'none'}")


def _assignments(log: Path) -> list[tuple[float, int, frozenset[int]]]:
    """(time, generation, active partitions) of each assignment one worker's log records."""
    out: list[tuple[float, int, frozenset[int]]] = []
    pending: tuple[float, int] | None = None
    with contextlib.suppress(FileNotFoundError), open(log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if "generation id" not in line and "Highwater for active" not in line:
                continue
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                rec = json.loads(line)
                event = str(rec.get("event", ""))
                at = datetime.fromisoformat(str(rec["timestamp"])).timestamp()
                m = _GENERATION.match(event)
                if m:
                    if pending is not None:  # a generation without a table: no active partitions
                        out.append((*pending, frozenset()))
                    pending = (at, int(m.group(1)))
                elif pending is not None and "Highwater for active" in event:
                    parts = frozenset(int(r.group(1)) for r in map(_ROW.match, event.splitlines()) if r)
                    out.append((*pending, parts))
                    pending = None
    if pending is not None:
        out.append((*pending, frozenset()))
    return out


def rebalances(logs: list[Path], since: float, until: float | None = None) -> Rebalances:
    """The group's rebalances after ``since`` from the logs of every indexer that ran (``until``:
    when the stream ended, for the hand-overs under load)."""
    rows = sorted((gen, at, log.stem, parts) for log in logs for at, gen, parts in _assignments(log))
    out = Rebalances()
    owner: dict[int, str] = {}
    for gen, at, worker, parts in rows:
        if at < since:
            out.before = gen if out.before is None else max(out.before, gen)
        elif not out.generations or out.generations[-1] != gen:
            out.generations.append(gen)
        if at >= since:
            n, m = out.idle.get(worker, (0, 0))
            out.idle[worker] = (n + (not parts), m + 1)
        for p in parts:
            if at >= since and owner.get(p, worker) != worker:
                out.moves += 1
                out.moves_until += until is None or at <= until
            owner[p] = worker
    return out
