"""The topics freshet uses, checked against the settings before a worker starts.

The indexer's state table is co-partitioned with the changes topic (a document's state lives in
the changelog partition of its change events), and the applied topic takes each record at
``source partition mod FRESHET_TOPIC_PARTITIONS``. A topic created by hand, by an older
configuration or by another tool can disagree with that layout; writing into it would fail on the
first write (a partition that does not exist) or, worse, succeed in the wrong place. So a worker
refuses to start, naming the topic, what it has, what the settings say, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GROWING = "docs/operations.md#partitions"


def state_changelog(consumer_group_prefix: str) -> str:
    """The changelog topic of the indexer's state table (Faust's naming: <app id>-<table>-changelog)."""
    return f"{consumer_group_prefix}-indexer-doc-state-changelog"


def indexer_footprint(consumer_group_prefix: str) -> tuple[list[str], list[str]]:
    """The consumer groups and Faust topics the indexers of one consumer-group prefix own (by exact
    name: a first generation's prefix is shared with the query workers and the Debezium bridge)."""
    app = f"{consumer_group_prefix}-indexer"
    return [app], [state_changelog(consumer_group_prefix), f"{app}-__assignor-__leader"]


@dataclass(frozen=True, slots=True)
class TopicFacts:
    """What the cluster says of one existing topic."""

    partitions: int
    replication: int
    compacted: bool


def topic_problems(facts: Mapping[str, TopicFacts], *, changes: str, state_changelog: str, applied: str,
                   partitions: int) -> list[str]:
    """Why a worker with these settings must not start on these topics (empty: it may).

    ``facts`` holds the topics that exist; a missing topic is created with the right layout.
    """
    problems: list[str] = []
    have = facts.get(changes)
    if have is not None and have.partitions != partitions:
        problems.append(
            f"the changes topic {changes!r} has {have.partitions} partitions but FRESHET_TOPIC_PARTITIONS is "
            f"{partitions}: the state table and the applied topic are laid out by it. Set "
            f"FRESHET_TOPIC_PARTITIONS={have.partitions} to use the topic as it is, or grow the partitions as "
            f"{GROWING} describes (adding partitions to a topic moves keys)")
    state = facts.get(state_changelog)
    if state is not None and state.partitions != partitions:
        problems.append(
            f"the indexer's state changelog {state_changelog!r} has {state.partitions} partitions but "
            f"FRESHET_TOPIC_PARTITIONS is {partitions}: a document's state must live in the partition of its "
            f"change events. The state belongs to another layout; see {GROWING}")
    if state is not None and not state.compacted:
        problems.append(f"the indexer's state changelog {state_changelog!r} is not compacted "
                        "(cleanup.policy=compact): old states would expire and a recovery lose them")
    out = facts.get(applied)
    if out is not None and out.partitions < partitions:
        problems.append(
            f"the applied topic {applied!r} has {out.partitions} partitions, fewer than FRESHET_TOPIC_PARTITIONS "
            f"({partitions}): the indexer writes each applied record to partition 'source partition mod "
            f"{partitions}'. Add partitions to it (kafka-topics --alter --partitions {partitions}) or choose "
            f"another FRESHET_TOPIC_APPLIED")
    return problems


def replication_warnings(facts: Mapping[str, TopicFacts], replication: int) -> list[str]:
    """Existing topics with fewer replicas than FRESHET_TOPIC_REPLICATION (a warning: Kafka cannot
    add replicas by itself; kafka-reassign-partitions can)."""
    return [f"topic {name!r} has {f.replication} replica(s), fewer than FRESHET_TOPIC_REPLICATION={replication}"
            for name, f in sorted(facts.items()) if f.replication < replication]
