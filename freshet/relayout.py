"""``freshet relayout``: move a drained deployment to a new partition layout, embedding nothing again.

The old layout is the one the settings describe (FRESHET_TOPIC_CHANGES, FRESHET_CONSUMER_GROUP_PREFIX,
FRESHET_TOPIC_APPLIED, FRESHET_TOPIC_PARTITIONS); the new one is given as a :class:`Layout`.
:func:`relayout` refuses (:class:`RelayoutRefusedError`, every reason listed) unless the old
indexers are stopped and handled their changes topic to its end, no indexer of the new layout is
running, and the new names are free or laid out for the new count. It then creates the new topics
as the workers would (the state changelog and the applied topic compacted) and copies what
:mod:`workers.relayout` plans: states, applied records and deciding change events. It is safe to
run again (after a failure, or twice): what the new layout already holds is never replaced.

Faults of Kafka raise :class:`~freshet.errors.TransientError`; nothing then is lost, run it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError, KafkaError
from tqdm import tqdm

from freshet.errors import FreshetError, TransientError
from freshet.kafka_access import KafkaAccess, access
from freshet.settings import Settings
from workers import relayout as rl
from workers.kafka_admin import admin_client, describe_topics, ensure_topics
from workers.relayout import Copy, Existing, Layout, Plan
from workers.topology import topic_problems

log = structlog.get_logger(__name__)


class RelayoutRefusedError(FreshetError):
    """The relayout cannot run now; ``problems`` says why, each with what to do."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("relayout refused:\n- " + "\n- ".join(self.problems))


def layout_of(settings: Settings) -> Layout:
    """The layout the settings describe (the old one)."""
    return Layout(settings.consumer_group_prefix, settings.topic_changes, settings.topic_applied,
                  settings.topic_partitions)


def relayout(settings: Settings, target: Layout, *, dry_run: bool = False) -> Plan:
    """Copy the old layout (``settings``) into ``target``; with ``dry_run``, only check and count."""
    old = layout_of(settings)
    bootstrap = settings.kafka_access
    problems = _layout_problems(settings, old, target) + _running(bootstrap, old, target)
    changelog = rl.latest(_scan(bootstrap, old.state_changelog, "old states"))
    bounds = _bounds(bootstrap, old.changes)
    _refuse_unless(problems + _lag(changelog, bounds))
    states = rl.states_of(changelog)
    applied = rl.latest(_scan(bootstrap, old.applied, "old applied"))
    originals = rl.Originals(states)
    for record in _scan(bootstrap, old.changes, "old changes"):
        originals.offer(record)
    plan = rl.plan(states, applied, originals.found, target.partitions, _existing(bootstrap, target))
    log.info("relayout_planned", dry_run=dry_run, **plan.summary())
    if not dry_run:
        _refuse_unless(_running(bootstrap, old, target) + _grown(bootstrap, old, bounds))  # while we read
        _create(settings, target)
        _write(bootstrap, target, plan)
    return plan


def create_topics(settings: Settings, target: Layout) -> list[str]:
    """Create the new layout's topics and nothing else (before producers publish there: a broker that
    creates topics on first use would give the changes topic its own default partition count); return
    those created. Refuses as :func:`relayout` does for names, not for running indexers."""
    _refuse_unless(_layout_problems(settings, layout_of(settings), target))
    return _create(settings, target)


def _create(settings: Settings, target: Layout) -> list[str]:
    """The new topics as the workers create them: the state changelog (as Faust does) and the applied
    topic compacted, every one with ``target.partitions`` partitions."""
    return ensure_topics(settings.kafka_access, [target.changes, target.applied, target.state_changelog],
                         partitions=target.partitions, replication=settings.topic_replication,
                         compacted=[target.applied, target.state_changelog])


def undrained(settings: Settings) -> list[str]:
    """The partitions of the settings' changes topic that their indexers have not handled to the end
    (empty: drained, lag 0), read from the positions on the state changelog."""
    old, bootstrap = layout_of(settings), settings.kafka_access
    return _lag(rl.latest(_scan(bootstrap, old.state_changelog, "states")), _bounds(bootstrap, old.changes))


def _lag(changelog: dict[bytes, Any], bounds: dict[int, tuple[int, int]]) -> list[str]:
    problems = rl.lag_problems(rl.positions_of(changelog), bounds)
    if problems:
        problems.append("wait until the indexers of the old layout handled every change (lag 0 in "
                        "freshet_consumer_lag_records), then stop them and run the relayout again")
    return problems


def _grown(bootstrap: KafkaAccess | str, old: Layout, bounds: dict[int, tuple[int, int]]) -> list[str]:
    """The old changes topic received records after the check: a producer still publishes there."""
    now = _bounds(bootstrap, old.changes)
    grown = sorted(p for p, (_, end) in now.items() if end != bounds.get(p, (0, 0))[1])
    if not grown:
        return []
    return [f"the old changes topic {old.changes!r} grew in partition(s) {grown} during the relayout: point every "
            "producer at the new changes topic, let the old indexers handle what came (start them, wait for lag "
            "0, stop them) and run the relayout again; nothing is written yet"]


def _refuse_unless(problems: Sequence[str]) -> None:
    if problems:
        raise RelayoutRefusedError(problems)


def _layout_problems(settings: Settings, old: Layout, target: Layout) -> list[str]:
    """Names that clash, old topics that are missing or unlike the settings, new ones laid out otherwise."""
    problems = [f"the new layout reuses {name!r} of the old one: give every new topic and the group prefix "
                "new names" for name in target.clashes(old)]
    others = set(settings.topics()) - {old.changes, old.applied}  # requests, replies, ...: not laid out
    problems += [f"{name!r} is one of freshet's other topics: choose another name"
                 for name in sorted({target.changes, target.applied} & others)]
    facts = describe_topics(settings.kafka_access, [old.changes, old.state_changelog, old.applied,
                                                         target.changes, target.state_changelog, target.applied])
    problems += [f"the old layout's topic {name!r} does not exist: are FRESHET_TOPIC_CHANGES and "
                 "FRESHET_CONSUMER_GROUP_PREFIX those of the running deployment?"
                 for name in (old.changes, old.state_changelog) if name not in facts]
    problems += [f"old layout: {p}" for p in topic_problems(
        facts, changes=old.changes, state_changelog=old.state_changelog, applied=old.applied,
        partitions=old.partitions)]
    fresh = {name: f for name, f in facts.items() if name not in target.clashes(old)}  # clashes: said above
    problems += [f"new layout: {p}" for p in topic_problems(
        fresh, changes=target.changes, state_changelog=target.state_changelog, applied=target.applied,
        partitions=target.partitions)]
    return problems


def _running(bootstrap: KafkaAccess | str, old: Layout, target: Layout) -> list[str]:
    """Indexers that are members of the old or the new layout's consumer group."""
    members = _members(bootstrap, [old.indexer_group, target.indexer_group])
    out = []
    if members.get(old.indexer_group):
        out.append(f"{members[old.indexer_group]} indexer(s) of the old layout still run (consumer group "
                   f"{old.indexer_group!r}): once they have handled every change (lag 0), stop them (a killed "
                   "one leaves the group after the session timeout)")
    if members.get(target.indexer_group):
        out.append(f"{members[target.indexer_group]} indexer(s) of the new layout already run (consumer group "
                   f"{target.indexer_group!r}): stop them; start them only after the relayout")
    return out


def _members(bootstrap: KafkaAccess | str, groups: list[str], attempts: int = 10) -> dict[str, int]:
    """Group id -> its members now (a new cluster may need a moment to elect a group coordinator)."""
    admin = admin_client(bootstrap)
    try:
        for attempt in range(attempts):
            try:
                described = admin.describe_groups(groups)
                return {g: len(d.get("members") or []) for g, d in described.items()}
            except CoordinatorNotAvailableError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)
        return {}
    except (KafkaError, OSError) as exc:
        raise TransientError(f"cannot describe the consumer groups {groups} on Kafka at {bootstrap}: {exc}") from exc
    finally:
        admin.close()


def _consumer(bootstrap: KafkaAccess | str) -> KafkaConsumer:
    try:
        return KafkaConsumer(**access(bootstrap).kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="freshet-relayout", max_partition_fetch_bytes=8 * 1024 * 1024)
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka at {bootstrap} is not reachable: {exc}") from exc


def _bounds(bootstrap: KafkaAccess | str, topic: str) -> dict[int, tuple[int, int]]:
    """Partition -> (log start, end offset) of ``topic``."""
    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        first, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return {tp.partition: (first[tp], end[tp]) for tp in tps}
    except KafkaError as exc:
        raise TransientError(f"cannot read the offsets of {topic!r}: {exc}") from exc
    finally:
        consumer.close()


def _scan(bootstrap: KafkaAccess | str, topic: str, what: str) -> Iterator[Any]:
    """Every record of ``topic`` from its start to its end as of now, in offset order per partition,
    with a progress bar; a topic that does not exist yields nothing."""
    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        left = {tp: end[tp] for tp in tps if consumer.position(tp) < end[tp]}
        with tqdm(total=sum(end[tp] - consumer.position(tp) for tp in left), desc=what, unit="record") as bar:
            while left:
                for tp, batch in consumer.poll(timeout_ms=1000).items():
                    for r in batch:
                        if r.offset < end[tp]:
                            yield r
                    bar.update(len(batch))
                left = {tp: e for tp, e in left.items() if consumer.position(tp) < e}
    except KafkaError as exc:
        raise TransientError(f"cannot read {topic!r}: {exc}; run the relayout again") from exc
    finally:
        consumer.close()


def _existing(bootstrap: KafkaAccess | str, target: Layout) -> Existing:
    """What the new layout holds already (nothing on a first run, unless producers publish there)."""
    states = rl.states_of(rl.latest(_scan(bootstrap, target.state_changelog, "new states")))
    applied = rl.latest(_scan(bootstrap, target.applied, "new applied"))
    keys = frozenset(r.key for r in _scan(bootstrap, target.changes, "new changes") if r.key is not None)
    return Existing(states={k: st.version for k, (_, st) in states.items()},
                    applied={k: rl.version_of_applied(r.value) for k, r in applied.items()}, changes=keys)


def _write(bootstrap: KafkaAccess | str, target: Layout, plan: Plan) -> None:
    """States first, then applied records, then change events (a copy of an event never precedes its
    state); each acknowledged by every in-sync replica before the next kind starts."""
    try:
        producer = KafkaProducer(**access(bootstrap).kafka_python(), acks="all", enable_idempotence=True,
                                 linger_ms=20, max_request_size=8 * 1024 * 1024, client_id="freshet-relayout")
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka at {bootstrap} is not reachable: {exc}") from exc
    try:
        for topic, copies, what in ((target.state_changelog, plan.states, "states"),
                                    (target.applied, plan.applied, "applied records"),
                                    (target.changes, plan.changes, "change events")):
            _send(producer, topic, copies, what)
    finally:
        producer.close()


def _send(producer: KafkaProducer, topic: str, copies: Sequence[Copy], what: str) -> None:
    futures = []
    try:
        for c in tqdm(copies, desc=f"copying {what}", unit="record"):
            futures.append(producer.send(topic, key=c.key, value=c.value, partition=c.partition,
                                         headers=[(rl.COPIED_HEADER, c.source.encode())], timestamp_ms=c.timestamp))
        producer.flush()
        for fut in futures:
            fut.get(timeout=60)
    except KafkaError as exc:
        raise TransientError(f"copying {what} to {topic!r} failed: {exc}; run the relayout again (it keeps what "
                             "is copied)") from exc


def report(settings: Settings, target: Layout, plan: Plan, *, dry_run: bool) -> list[str]:
    """What the run did (or would do) and what to do next, as lines for the operator."""
    counts = plan.summary()
    head = "would copy" if dry_run else "copied"
    lines = [f"{head} {counts['states_copied']} state(s), {counts['applied_copied']} applied record(s) and "
             f"{counts['changes_copied']} change event(s) into {target.partitions} partition(s); kept what the new "
             f"layout had already: {counts['states_kept']} state(s), {counts['applied_kept']} applied record(s), "
             f"change events of {counts['changes_kept']} document(s)"]
    if plan.missing:
        lines.append(f"{len(plan.missing)} document(s) had no deciding event left on {settings.topic_changes!r} "
                     f"(its retention; e.g. {plan.missing[0]!r}): their state and applied record are copied, and "
                     "`freshet verify` reports their chunks as it did on the old layout")
    workers = Path(settings.home, "workers")
    stale = sorted(str(p) for p in [*workers.glob(f"*/{settings.consumer_group_prefix}-*"), *workers.glob("*/v*")])
    if stale:
        lines.append(f"local worker state of the old layout in {', '.join(stale)}: the new layout's workers do "
                     "not read it (their data directories are named after their app id); remove it to free the disk")
    if not dry_run:
        lines.append("next: start the indexers and query workers with FRESHET_TOPIC_CHANGES="
                     f"{target.changes} FRESHET_TOPIC_APPLIED={target.applied} FRESHET_CONSUMER_GROUP_PREFIX="
                     f"{target.group_prefix} FRESHET_TOPIC_PARTITIONS={target.partitions}")
    return lines
