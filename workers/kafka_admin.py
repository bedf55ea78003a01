"""Kafka administration through kafka-python: wait for the broker, create topics, read its facts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from freshet.errors import ConfigError, TransientError
from freshet.kafka_access import KafkaAccess, access, refusals, refused
from workers.topology import TopicFacts

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BrokerInfo:
    """What a running Kafka cluster says about itself."""

    cluster_id: str | None
    brokers: int
    controller_id: int | None
    api_version: str
    """Broker version as inferred by kafka-python from the ApiVersions response."""
    metadata_version: int | None
    """The cluster's finalized ``metadata.version`` feature level (KRaft)."""


def admin_client(bootstrap: KafkaAccess | str, *, timeout: float = 10.0) -> KafkaAdminClient:
    with refusals() as seen:
        try:
            return KafkaAdminClient(**access(bootstrap).kafka_python(), client_id="freshet-admin",
                                    request_timeout_ms=int(timeout * 1000), bootstrap_timeout_ms=int(timeout * 1000))
        except (KafkaError, OSError) as exc:
            raise refused(exc, seen, bootstrap) from exc


def wait_for_broker(bootstrap: KafkaAccess | str, *, timeout: float) -> BrokerInfo:
    """Block until the broker answers cluster metadata, or raise :class:`TransientError`."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return broker_info(bootstrap)
        except TransientError as exc:
            last = exc
            time.sleep(1.0)
    raise TransientError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last}")


def broker_info(bootstrap: KafkaAccess | str) -> BrokerInfo:
    admin = admin_client(bootstrap, timeout=10.0)  # a SASL_SSL refusal on a loaded machine took over 5 s to show
    try:
        cluster = admin.describe_cluster()
        brokers = cluster.get("brokers", [])
        version = admin.get_broker_version_data(brokers[0]["broker_id"]).broker_version if brokers else ()
        features = admin.describe_features()
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka at {bootstrap} did not describe its cluster: {exc}") from exc
    finally:
        admin.close()
    return BrokerInfo(
        cluster_id=cluster.get("cluster_id"), brokers=len(cluster.get("brokers", [])),
        controller_id=cluster.get("controller_id"), api_version=".".join(map(str, version)),
        metadata_version=features.get("metadata.version", {}).get("finalized", (None, None))[1],
    )


def ensure_topics(bootstrap: KafkaAccess | str, names: Iterable[str], *, partitions: int, replication: int = 1,
                  compacted: Iterable[str] = ()) -> list[str]:
    """Create the missing topics with ``replication`` replicas (FRESHET_TOPIC_REPLICATION; 1 on the
    local single-broker stack); return those created.

    ``compacted`` topics get ``cleanup.policy=compact`` (set on existing ones too): a topic read
    from its beginning to rebuild state must keep each key's last record, not expire it.
    """
    admin = admin_client(bootstrap)
    compact = set(compacted)
    try:
        existing = set(admin.list_topics())
        missing = sorted(set(names) - existing)
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was quicker
                admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replication,
                                              topic_configs={"cleanup.policy": "compact"} if n in compact else {})
                                     for n in missing])
            log.info("topics_created", topics=missing, partitions=partitions, replication=replication)
        compact_existing(admin, sorted(compact & existing), bootstrap)
        return missing
    except (KafkaError, OSError) as exc:
        raise TransientError(f"cannot create topics on Kafka at {bootstrap}: {exc}") from exc
    finally:
        admin.close()


def compact_existing(admin: KafkaAdminClient, names: Sequence[str], bootstrap: KafkaAccess | str) -> list[str]:
    """Set ``cleanup.policy=compact`` on those of ``names`` (topics believed to exist) that lack it;
    return those changed.

    Raises :class:`TransientError` when the answering broker has not heard of one of them yet (a
    broker catching up after a restart, or a topic just created through another): kafka-python 3
    drops DescribeConfigs' per-topic error and answers with no entries, and its ``alter_configs``
    then raised ``ValueError`` unless ``raise_on_unknown=False``. :class:`ConfigError` when the
    principal may not alter the topic's configuration.
    """
    policies = cleanup_policies(admin, names, bootstrap)
    todo = sorted(n for n, p in policies.items() if "compact" not in p.split(","))
    if not todo:
        return []
    answer = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, n, configs={"cleanup.policy": "compact"})
                                  for n in todo], incremental=True, raise_on_unknown=False)
    failed = {n: r for n, r in answer.get("topic", {}).items() if r != "OK"}
    if any("Authorization" in r for r in failed.values()):
        raise ConfigError(f"topics {sorted(failed)} must be compacted (cleanup.policy=compact) and this principal may "
                          f"not alter their configuration: {failed}")
    if failed:
        raise TransientError(f"Kafka at {bootstrap} did not compact topics {sorted(failed)}: {failed}")
    log.info("topics_compacted", topics=todo)
    return todo


def cleanup_policies(admin: KafkaAdminClient, names: Sequence[str], bootstrap: KafkaAccess | str) -> dict[str, str]:
    """Each of ``names``' ``cleanup.policy`` as the answering broker knows it. Raises
    :class:`TransientError` for a topic it has not heard of (listed by another broker; its answer then
    carries no entry at all, not even the default)."""
    if not names:
        return {}
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, configs={"cleanup.policy": None})
                                        for n in names], config_filter="all")
    topics = described.get("topic", {})
    unknown = sorted(n for n in names if "cleanup.policy" not in topics.get(n, {}))
    if unknown:
        raise TransientError(f"Kafka at {bootstrap} does not know topics {unknown} yet (a broker catching up)")
    return {n: str(topics[n]["cleanup.policy"]["value"]) for n in names}


def wait_for_topics(bootstrap: KafkaAccess | str, names: Iterable[str], *, timeout: float) -> None:
    """Block until Kafka describes every one of ``names`` with all its partitions led, or raise
    :class:`TransientError` (a topic just created can take a moment to reach every broker)."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = sorted(wanted - set(describe_topics(bootstrap, wanted, led=True)))
            why = ""
        except TransientError as exc:  # a broker that has not heard of them yet
            missing, why = sorted(wanted), f": {exc}"
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TransientError(f"topics {missing} not ready on Kafka at {bootstrap} after {timeout:.0f}s{why}")
        time.sleep(0.5)


def describe_topics(bootstrap: KafkaAccess | str, names: Iterable[str], *, led: bool = False) -> dict[str, TopicFacts]:
    """Partitions, replication and compaction of those of ``names`` that exist (with ``led``: only
    those whose every partition has a leader)."""
    admin = admin_client(bootstrap)
    try:
        wanted = sorted(set(names) & set(admin.list_topics()))
        if not wanted:
            return {}
        described = admin.describe_topics(wanted)
        policies = cleanup_policies(admin, wanted, bootstrap)
    except (KafkaError, OSError) as exc:
        raise TransientError(f"cannot describe topics on Kafka at {bootstrap}: {exc}") from exc
    finally:
        admin.close()
    out: dict[str, TopicFacts] = {}
    for t in described:
        if t.get("error_code", 0) != 0:
            continue
        parts = t.get("partitions", [])
        if led and (not parts or any(p.get("leader_id", -1) < 0 for p in parts)):
            continue
        out[t["name"]] = TopicFacts(partitions=len(parts),
                                    replication=min((len(p.get("replica_nodes", [])) for p in parts), default=0),
                                    compacted="compact" in policies.get(t["name"], "").split(","))
    return out


def delete_footprint(bootstrap: KafkaAccess | str, groups: Sequence[str], topics: Sequence[str]) -> list[str]:
    """Delete the consumer ``groups`` (their committed positions) and ``topics`` that exist; return
    what was deleted. Raises :class:`ConfigError` when a group still has members (something still
    consumes with it) or the principal may not delete, :class:`TransientError` on other faults."""
    admin = admin_client(bootstrap)
    try:
        known = {g["group_id"] for g in admin.list_groups()} & set(groups)
        deleted: list[str] = []
        if known:
            refused = {g: r for g, r in admin.delete_groups(sorted(known)).items() if r != "OK"}  # group: OK | error
            if refused:
                raise ConfigError(f"consumer groups not deleted (still in use, or not allowed): {refused}")
            deleted += sorted(known)
        present = sorted(set(topics) & set(admin.list_topics()))
        if present:
            admin.delete_topics(present)
            deleted += present
        return deleted
    except (KafkaError, OSError) as exc:
        raise TransientError(f"cannot delete {list(groups) + list(topics)} on Kafka at {bootstrap}: {exc}") from exc
    finally:
        admin.close()
