"""A worker refuses to start on topics laid out for other settings, and says why."""

from __future__ import annotations

import pytest
from kafka.admin import NewTopic

from freshet.errors import StackError, TransientError
from freshet.settings import Settings
from ops.stack import Stack
from streams.worker import prepare_topics
from workers.kafka_admin import admin_client, compact_existing, describe_topics, ensure_topics
from workers.topology import TopicFacts, state_changelog

pytestmark = pytest.mark.integration


def test_an_indexer_refuses_a_changes_topic_of_another_partition_count(isolated: Settings) -> None:
    settings = isolated  # FRESHET_TOPIC_PARTITIONS=2
    admin = admin_client(settings.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(settings.topic_changes, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()
    with pytest.raises(StackError) as err:
        Stack(settings).up(["indexer"])
    assert f"the changes topic {settings.topic_changes!r} has 3 partitions but FRESHET_TOPIC_PARTITIONS is 2" \
        in err.value.log_tail
    facts = describe_topics(settings.bootstrap_servers, [settings.topic_changes, state_changelog(
        settings.consumer_group_prefix)])
    assert facts[settings.topic_changes].partitions == 3 and len(facts) == 1, "the worker wrote before refusing"


def test_an_indexer_creates_its_state_changelog_before_faust_subscribes(isolated: Settings) -> None:
    # Faust creates the changelog only after its consumer subscribed; a group leader whose metadata
    # lacked it assigned no changelog partition, so no state recovery ran (documents lost in a
    # cluster chaos run). The worker's start creates it first, compacted, laid out like the changes.
    settings = isolated
    changelog = state_changelog(settings.consumer_group_prefix)
    assert changelog not in describe_topics(settings.bootstrap_servers, [changelog])
    prepare_topics(settings, "query")
    assert changelog not in describe_topics(settings.bootstrap_servers, [changelog]), "not the query worker's"
    prepare_topics(settings, "indexer")
    facts = describe_topics(settings.bootstrap_servers, [changelog, settings.topic_changes], led=True)
    assert facts[changelog] == TopicFacts(partitions=settings.topic_partitions,
                                          replication=settings.topic_replication, compacted=True)
    assert facts[settings.topic_changes].partitions == settings.topic_partitions


def test_a_compacted_topic_created_plain_is_compacted_once(isolated: Settings) -> None:
    settings = isolated
    admin = admin_client(settings.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(settings.topic_applied, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    assert not describe_topics(settings.bootstrap_servers, [settings.topic_applied])[settings.topic_applied].compacted
    for _ in range(2):  # the second finds nothing to change
        assert ensure_topics(settings.bootstrap_servers, [settings.topic_applied], partitions=2,
                             compacted=[settings.topic_applied]) == []
        assert describe_topics(settings.bootstrap_servers, [settings.topic_applied])[settings.topic_applied].compacted


def test_compacting_a_topic_the_answering_broker_has_not_heard_of_is_transient(isolated: Settings) -> None:
    # On a cluster a topic listed by one broker can be unknown to the one answering DescribeConfigs
    # (a broker catching up after a restart). kafka-python 3 then answers with no entries and its
    # alter_configs raised ValueError, which crashed an indexer's start (CI, chaos-cluster, 2026-12-03);
    # it must be a transient fault, waited out, like the broker being away.
    settings = isolated
    admin = admin_client(settings.bootstrap_servers)
    try:
        with pytest.raises(TransientError, match="does not know topics"):
            compact_existing(admin, [settings.topic_applied], settings.bootstrap_servers)
    finally:
        admin.close()
