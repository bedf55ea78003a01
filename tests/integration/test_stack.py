"""The real servers answer and say who they are."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import Endpoints
from workers.kafka_admin import broker_info

pytestmark = pytest.mark.integration


def test_kafka_broker_reports_its_version(endpoints: Endpoints) -> None:
    info = broker_info(endpoints.bootstrap)
    assert info.brokers >= 1
    assert info.api_version.startswith("3.9")
    assert info.cluster_id


def test_weaviate_reports_its_version(endpoints: Endpoints) -> None:
    meta = httpx.get(f"http://{endpoints.weaviate_host}:{endpoints.http_port}/v1/meta", timeout=5).json()
    assert meta["version"] == "1.35.2"
