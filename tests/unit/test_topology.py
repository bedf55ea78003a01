from workers.topology import TopicFacts, replication_warnings, topic_problems

LAYOUT = {"changes": "c", "state_changelog": "s", "applied": "a"}


def facts(c: int = 4, s: int = 4, a: int = 4, s_compacted: bool = True) -> dict[str, TopicFacts]:
    return {"c": TopicFacts(c, 1, False), "s": TopicFacts(s, 1, s_compacted), "a": TopicFacts(a, 1, True)}


def test_topics_laid_out_by_the_settings_pass() -> None:
    assert topic_problems(facts(), partitions=4, **LAYOUT) == []
    assert topic_problems({}, partitions=4, **LAYOUT) == []  # missing topics are created right
    assert topic_problems(facts(a=8), partitions=4, **LAYOUT) == []  # more applied partitions than needed


def test_each_disagreement_is_named_with_what_to_do() -> None:
    changes = topic_problems(facts(c=8), partitions=4, **LAYOUT)
    assert len(changes) == 1 and "has 8 partitions but FRESHET_TOPIC_PARTITIONS is 4" in changes[0]
    assert "FRESHET_TOPIC_PARTITIONS=8" in changes[0]
    assert "state changelog 's' has 2 partitions" in topic_problems(facts(s=2), partitions=4, **LAYOUT)[0]
    assert "not compacted" in topic_problems(facts(s_compacted=False), partitions=4, **LAYOUT)[0]
    assert "fewer than FRESHET_TOPIC_PARTITIONS" in topic_problems(facts(a=2), partitions=4, **LAYOUT)[0]
    assert len(topic_problems(facts(c=8, s=8, a=2), partitions=4, **LAYOUT)) == 3


def test_under_replicated_topics_are_warned_about() -> None:
    assert replication_warnings(facts(), 1) == []
    assert len(replication_warnings(facts(), 3)) == 3
