"""Building a worker's Faust app from the settings (no module-level app: nothing at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import faust

from freshet.settings import Settings

Role = Literal["indexer", "query"]


@dataclass(frozen=True)
class Topics:
    """The topics of one app, declared once. Values and keys are raw bytes: schemas decode."""

    changes: Any
    requests: Any
    replies: Any
    applied: Any
    dead_letter: Any
    metrics: Any
    _app: faust.App

    def named(self, name: str) -> Any:
        """A raw topic by name (reply topics chosen by the requester)."""
        return raw_topic(self._app, name)


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     allow_empty=True)


def create_app(settings: Settings, role: Role) -> tuple[faust.App, Topics]:
    """A Faust app for one worker role; its id is the consumer group."""
    datadir = settings.home / "workers" / role
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.consumer_group_prefix}-{role}",
        broker=[f"kafka://{hp}" for hp in settings.bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(datadir),
        web_enabled=True,
        web_bind=settings.web_bind,
        web_port=settings.worker_web_port(role),
        web_in_thread=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_request_timeout=settings.kafka_request_timeout_seconds,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 5),
        autodiscover=False,
        loghandlers=[],
    )
    topics = Topics(
        changes=raw_topic(app, settings.topic_changes),
        requests=raw_topic(app, settings.topic_requests),
        replies=raw_topic(app, settings.topic_replies),
        applied=raw_topic(app, settings.topic_applied),
        dead_letter=raw_topic(app, settings.topic_dead_letter),
        metrics=raw_topic(app, settings.topic_metrics),
        _app=app,
    )
    return app, topics
