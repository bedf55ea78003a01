"""Assembling and running one worker process (``freshet worker indexer|query``)."""

from __future__ import annotations

import os
import socket

import faust
import structlog

from freshet.errors import ConfigError
from freshet.log import logging_config
from freshet.settings import Settings
from streams import bridge, dashboard, telemetry, web
from streams import indexer as indexer_agent
from streams import query as query_agent
from streams.app import Role, create_app
from workers.applied_view import AppliedView
from workers.embedding import EmbeddingCache, SentenceTransformerEmbedder
from workers.fencing import Fence, FencedStore
from workers.generation import adopt, check_generation, read_generations
from workers.indexing import Indexer
from workers.kafka_admin import describe_topics, ensure_topics, wait_for_broker, wait_for_topics
from workers.probes import Probes
from workers.retry import within
from workers.search import Searcher
from workers.stats import IndexerStats, QueryStats
from workers.telemetry import SnapshotBuilder
from workers.topology import replication_warnings, state_changelog, topic_problems
from workers.weaviate_store import store_for

log = structlog.get_logger(__name__)


def build(settings: Settings, role: Role, *, bridge_prefix: str | None = None) -> faust.App:
    """The Faust app of ``role`` with its agents, adapters and web pages; an indexer given
    ``bridge_prefix`` (the configured consumer-group prefix) also runs the Debezium bridge."""
    app, topics = create_app(settings, role)
    embedder = SentenceTransformerEmbedder.for_settings(settings)
    store = store_for(settings)
    health = web.Health(role)
    instance = f"{role}@{socket.gethostname()}:{os.getpid()}"
    if role == "indexer":
        fence = Fence(generation=lambda: app.consumer_generation_id,
                      assignment=lambda: indexer_agent.ownership(app, settings)[0],
                      rebalancing=lambda: bool(app.rebalancing), writer=instance)
        indexer = Indexer(embedder, FencedStore(store, fence), EmbeddingCache(settings.embed_cache_size),
                          IndexerStats(), min_chars=settings.chunk_min_chars, context=settings.chunk_context,
                          max_chunks=settings.max_chunks_per_document, generation=settings.generation or None,
                          reuse=store_for(settings, collection=settings.reuse_vectors_from)
                          if settings.reuse_vectors_from else None)
        web.register(app, health, indexer.stats.as_dict)
        indexer_agent.register(app, topics, settings, indexer, health, fence)
        if bridge_prefix is not None:  # the Debezium bridge, when FRESHET_DEBEZIUM_TOPIC is set
            bridge.register(app, settings.model_copy(update={"consumer_group_prefix": bridge_prefix}), health)
        builder = SnapshotBuilder(role, instance, indexer.stats.as_dict,
                                  ["events_applied", "chunks_embedded", "chars_embedded", "dead_lettered"])
    else:
        searcher = Searcher(embedder, store, AppliedView(), QueryStats(), metadata_schema=settings.metadata_schema,
                            overfetch=settings.query_overfetch, cache_size=settings.query_cache_size,
                            alpha=settings.hybrid_alpha, tenancy=settings.tenant_policy,
                            generation=settings.generation or None)
        web.register(app, health, searcher.stats.as_dict)
        query_agent.register(app, topics, settings, searcher, Probes(searcher), health)
        dashboard.register(app, settings)
        builder = SnapshotBuilder(role, instance, searcher.stats.as_dict, ["requests", "timeouts", "errors"],
                                  quality=searcher.quality)
    telemetry.register(app, topics, settings, builder, instance)
    return app


def run(settings: Settings, role: Role) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT."""
    info = wait_for_broker(settings.kafka_access, timeout=settings.start_timeout_seconds)
    check_generation(settings)
    # the bridge's group keeps the configured prefix; the builders of a new generation (pinned to it) run none
    bridge_prefix = None if settings.generation else settings.consumer_group_prefix
    active, _ = read_generations(settings)  # before the topics: an adopted generation has its own changelog
    settings = adopt(settings, role, active)
    if active is not None and settings.generation == active.generation:
        log.info("generation_adopted", role=role, generation=active.generation, collection=active.collection)
    prepare_topics(settings, role)
    log.info("worker_starting", role=role, kafka=settings.bootstrap_servers, kafka_version=info.api_version,
             weaviate=settings.weaviate_url, collection=settings.collection)
    app = build(settings, role, bridge_prefix=bridge_prefix)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level))
    worker.execute_from_commandline()



def prepare_topics(settings: Settings, role: Role) -> None:
    """Check the existing topics against the settings (:func:`check_topics`), create the missing
    ones, the indexer's state changelog among them, and wait until Kafka describes them all.

    The changelog must exist before Faust's consumer first asks for metadata: Faust creates it
    itself only after subscribing, and a group leader whose metadata lacks it assigns no changelog
    partition (so no state recovery) at that rebalance; see :func:`workers.fencing.state_ownership`.

    A transient fault (a broker away, or one that has not yet heard of a topic another broker
    listed) is waited out with backoff until ``FRESHET_START_TIMEOUT_SECONDS``, then raised.
    """
    within(lambda: _prepare_topics(settings, role), timeout=settings.start_timeout_seconds, what="topics")


def _prepare_topics(settings: Settings, role: Role) -> None:
    check_topics(settings)  # before creating any: a refused layout gets nothing new beside it
    names = [*settings.topics(), *([state_changelog(settings.consumer_group_prefix)] if role == "indexer" else [])]
    ensure_topics(settings.kafka_access, names, partitions=settings.topic_partitions,
                  replication=settings.topic_replication,
                  compacted=[settings.topic_applied, settings.topic_generations,
                             state_changelog(settings.consumer_group_prefix)])
    wait_for_topics(settings.kafka_access, names, timeout=settings.start_timeout_seconds)


def check_topics(settings: Settings) -> None:
    """Refuse to start (:class:`ConfigError`) on topics laid out for other settings."""
    changelog = state_changelog(settings.consumer_group_prefix)
    facts = describe_topics(settings.kafka_access, [*settings.topics(), changelog])
    for warning in replication_warnings(facts, settings.topic_replication):
        log.warning("topic_under_replicated", detail=warning)
    problems = topic_problems(facts, changes=settings.topic_changes, state_changelog=changelog,
                              applied=settings.topic_applied, partitions=settings.topic_partitions)
    if problems:
        raise ConfigError("the topics on Kafka do not fit the settings:\n- " + "\n- ".join(problems))
