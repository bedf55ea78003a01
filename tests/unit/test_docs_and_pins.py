"""The README, the pom and docker-compose.yml stay in step with the code."""

import re
from pathlib import Path

from freshet.settings import KAFKA_VERSION, WEAVIATE_VERSION, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_documents_every_setting() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [f"FRESHET_{n.upper()}" for n in Settings.model_fields if f"`FRESHET_{n.upper()}`" not in reference]
    assert not missing, f"docs/configuration.md lacks {missing}"
    assert "docs/configuration.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme


def test_pinned_versions_agree_everywhere() -> None:
    pom = (ROOT / "ops" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.search(r"<kafka.version>(.+?)</kafka.version>", pom).group(1) == KAFKA_VERSION  # type: ignore[union-attr]
    assert f"apache/kafka:{KAFKA_VERSION}" in compose
    assert f"semitechnologies/weaviate:{WEAVIATE_VERSION.lstrip('v')}" in compose


def test_docker_compose_publishes_every_port_on_the_loopback_unless_asked() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    published = re.findall(r'^\s+- "([^"]*:\d+:\d+)"\s*$', compose, flags=re.M)
    assert len(published) >= 7, published  # kafka, weaviate http + grpc, two workers, prometheus, grafana
    bare = [p for p in published if not p.startswith("${FRESHET_PUBLISH_HOST:-127.0.0.1}:")]
    assert not bare, f"published beyond the host by default: {bare}"
    assert not re.findall(r'^\s+- "\d+:\d+"\s*$', compose, flags=re.M)
