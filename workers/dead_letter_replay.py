"""Replaying dead letters: which to publish again, why the rest is skipped, and the records to send.

:func:`plan_replay` picks what to publish again (by a :class:`Selection`, against the
:class:`Ledger` of what the changes topic says was replayed before) and :func:`replay_record` builds
the record to publish. Pure: ``freshet dlq replay`` (:mod:`freshet.dlq`) reads the topics and sends.

A replay is a change event like any other: the indexer applies it only when its version is above the
applied one (``workers.planning.winning_event``), so a stale one is skipped, and a re-sent one is a
no-op. Replays are also not sent twice: the replay headers already on the changes topic say which
dead letters (and which origins) were replayed before.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from freshet.errors import FreshetError
from schemas.deadletter import REPLAY_DEAD_LETTER, REPLAY_OF
from workers.dead_letters import DeadLetter, header_text, in_order


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time (UTC if no zone is given) or a duration ago (``90s``, ``30m``,
    ``2h``, ``7d``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - timedelta(seconds=float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise FreshetError(f"--since {text!r}: give an ISO 8601 time (2026-12-05T10:00:00Z) "
                           "or a duration ago (30m, 2h, 7d)") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Ledger:
    """What the changes topic says was replayed already (from its replay headers)."""

    origins: frozenset[str] = frozenset()
    dead_letters: frozenset[str] = frozenset()

    def replayed(self, d: DeadLetter, dead_letter_topic: str) -> bool:
        return d.origin in self.origins or f"{dead_letter_topic}:{d.position}" in self.dead_letters


def ledger_from(headers_of_records: Iterable[Iterable[tuple[str, bytes]]]) -> Ledger:
    """The :class:`Ledger` of the changes topic's records' headers."""
    origins: set[str] = set()
    letters: set[str] = set()
    for headers in headers_of_records:
        for k, v in headers:
            if k == REPLAY_OF:
                origins.add(header_text(v))
            elif k == REPLAY_DEAD_LETTER:
                letters.add(header_text(v))
    return Ledger(frozenset(origins), frozenset(letters))


@dataclass(frozen=True)
class Selection:
    """Which dead letters a replay considers (empty sets: all)."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None

    def matches(self, d: DeadLetter) -> bool:
        return ((not self.reasons or d.reason in self.reasons)
                and (not self.source_topics or d.source_topic in self.source_topics)
                and (self.since is None or (d.timestamp is not None and d.timestamp >= self.since)))


#: Why a matching dead letter is not replayed, in the order the summary names them.
SKIPS = ("already_replayed", "truncated", "not_replayable", "duplicate")


@dataclass
class ReplayPlan:
    send: list[DeadLetter] = field(default_factory=list)
    """To publish, in written order."""
    matched: int = 0
    """Dead letters the selection matched."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Matching dead letters not sent, by cause (:data:`SKIPS`)."""


def plan_replay(letters: Iterable[DeadLetter], ledger: Ledger, selection: Selection, *, dead_letter_topic: str,
                replayable: frozenset[str], again: bool = False) -> ReplayPlan:
    """What to replay: matching dead letters from a ``replayable`` source topic, whole (not
    truncated), not replayed before (unless ``again``), one per origin."""
    plan = ReplayPlan()
    origins: set[str] = set()
    for d in in_order(letters):
        if not selection.matches(d):
            continue
        plan.matched += 1
        if d.source_topic not in replayable:
            plan.skipped["not_replayable"] += 1
        elif d.truncated is not None:
            plan.skipped["truncated"] += 1
        elif not again and ledger.replayed(d, dead_letter_topic):
            plan.skipped["already_replayed"] += 1
        elif d.origin in origins:
            plan.skipped["duplicate"] += 1
        else:
            origins.add(d.origin)
            plan.send.append(d)
    return plan


def replay_record(d: DeadLetter, *, dead_letter_topic: str, changes_topic: str,
                  partitions: int) -> dict[str, Any]:
    """The producer arguments that publish ``d`` again: original key, value and non-freshet headers,
    plus the replay headers. A record read from the changes topic goes back to its own partition (the
    one its document's state lives on, whatever partitioner its producer used); one from another
    topic is partitioned by its key."""
    headers = [*d.original_headers, (REPLAY_OF, d.origin.encode()),
               (REPLAY_DEAD_LETTER, f"{dead_letter_topic}:{d.position}".encode())]
    same = d.source_topic == changes_topic and 0 <= d.source_partition < partitions
    return {"key": d.key, "value": d.value, "headers": headers, "partition": d.source_partition if same else None}


def summary_line(plan: ReplayPlan, *, dry_run: bool) -> str:
    skipped = ", ".join(f"{plan.skipped[c]} {c.replace('_', ' ')}" for c in SKIPS if plan.skipped[c])
    verb = "would replay" if dry_run else "replayed"
    return f"dlq replay: {verb} {len(plan.send)} of {plan.matched} matching; skipped: {skipped or 'none'}"
