"""A worker refuses to start on topics laid out for other settings, and says why."""

from __future__ import annotations

import pytest
from kafka.admin import NewTopic

from freshet.errors import StackError
from freshet.settings import Settings
from ops.stack import Stack
from workers.kafka_admin import admin_client, describe_topics
from workers.topology import state_changelog

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
