"""The Helm chart (ops/helm/freshet) renders, validates and stays in step with the workers' settings.

The first run installs helm and kubeconform (Go module proxy) and the Kubernetes schemas (PyPI)
into the cache outside the clone, a few minutes once; later runs take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from freshet.errors import StackError
from freshet.settings import Settings
from ops import kube_tools

# An integration test: the first run builds helm from source (Go module proxy) and fetches the
# schemas (PyPI), so give the module's set-up room beyond the 600 s default.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROLES = ("indexer", "query")
FULL_VALUES = kube_tools.CHART / "ci" / "full-values.yaml"
DEFAULT_VALUES: dict[str, Any] = yaml.safe_load((kube_tools.CHART / "values.yaml").read_text(encoding="utf-8"))
SETTING_NAMES = {f"FRESHET_{name.upper()}" for name in Settings.model_fields}

Resources = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def tools() -> kube_tools.Tools:
    return kube_tools.ensure_tools(Settings().cache_dir)


def _resources(manifest: str) -> Resources:
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module", params=["default", "full"])
def rendered(request: pytest.FixtureRequest, tools: kube_tools.Tools) -> Iterator[tuple[str, Resources]]:
    values = FULL_VALUES if request.param == "full" else None
    yield request.param, _resources(kube_tools.render(tools, values))


def _one(resources: Resources, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [r for (k, _), r in resources.items() if k == kind
             and (component is None or r["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {[r['metadata']['name'] for r in found]}"
    return found[0]


def _config(resources: Resources) -> dict[str, str]:
    data: dict[str, str] = _one(resources, "ConfigMap")["data"]
    return data


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _settings(resources: Resources) -> Settings:
    """The Settings a worker builds from the ConfigMap (and the chart's Secret, when there is one),
    validated from those values alone (this process's environment left out)."""
    env = dict(_config(resources))
    secrets = [r for (k, _), r in resources.items() if k == "Secret"]
    for secret in secrets:
        env.update(secret.get("stringData", {}))
    return Settings.model_validate({name.removeprefix("FRESHET_").lower(): value for name, value in env.items()})


def test_the_chart_passes_helm_lint_and_kubeconform_strict() -> None:
    failures = kube_tools.check(Settings().cache_dir)
    assert failures == []


def test_every_variable_the_chart_sets_is_a_real_setting(rendered: tuple[str, Resources]) -> None:
    _, resources = rendered
    names = set(_config(resources))
    for (kind, _), secret in resources.items():
        if kind == "Secret":
            names |= set(secret["stringData"])
    assert names - SETTING_NAMES == set(), "the chart sets variables freshet.settings.Settings does not have"
    _settings(resources)  # and the values parse as the settings' types


def test_both_workers_probe_healthz_on_their_web_port(rendered: tuple[str, Resources]) -> None:
    _, resources = rendered
    settings = _settings(resources)
    assert settings.web_bind == "0.0.0.0", "the probes reach the pod IP, not the loopback"
    for role in ROLES:
        container = _container(_one(resources, "Deployment", role))
        assert container["args"] == ["worker", role]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/healthz", f"{role} {probe}"
            assert ports.get(get["port"], get["port"]) == settings.worker_web_port(role), f"{role} {probe}"


def test_pods_carry_prometheus_scrape_annotations(rendered: tuple[str, Resources]) -> None:
    _, resources = rendered
    settings = _settings(resources)
    for role in ROLES:
        annotations = _one(resources, "Deployment", role)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(settings.worker_web_port(role))


def test_each_worker_has_a_disruption_budget_over_its_own_pods(rendered: tuple[str, Resources]) -> None:
    _, resources = rendered
    for role in ROLES:
        pdb = _one(resources, "PodDisruptionBudget", role)
        pod_labels = _one(resources, "Deployment", role)["spec"]["template"]["metadata"]["labels"]
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert selector["app.kubernetes.io/component"] == role
        assert pdb["spec"]["maxUnavailable"] == 1


def test_replicas_follow_the_values(rendered: tuple[str, Resources]) -> None:
    name, resources = rendered
    for role in ROLES:
        expected = 3 if name == "full" else DEFAULT_VALUES[role]["replicas"]
        assert _one(resources, "Deployment", role)["spec"]["replicas"] == expected


def test_the_data_dir_and_tmp_are_the_only_writable_places(rendered: tuple[str, Resources]) -> None:
    _, resources = rendered
    home = _settings(resources).home
    for role in ROLES:
        pod = _one(resources, "Deployment", role)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(mounts) == {str(home), "/tmp"}
        assert all("emptyDir" in volumes[v] for v in mounts.values())


def test_the_secret_is_rendered_only_when_values_give_one(rendered: tuple[str, Resources]) -> None:
    name, resources = rendered
    secrets = [r for (k, _), r in resources.items() if k == "Secret"]
    assert len(secrets) == (1 if name == "full" else 0)
    for role in ROLES:
        sources = _container(_one(resources, "Deployment", role))["envFrom"]
        refs = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
        assert refs == [s["metadata"]["name"] for s in secrets]


def test_the_default_weaviate_host_serves_both_ports(tools: kube_tools.Tools) -> None:
    resources = _resources(kube_tools.render(tools))
    settings = _settings(resources)
    bridge = resources[("Service", settings.weaviate_host)]
    ports = {p["port"]: p["targetPort"] for p in bridge["spec"]["ports"]}
    assert ports == {settings.weaviate_http_port: 8080, settings.weaviate_grpc_port: 50051}
    assert bridge["spec"]["selector"] == {"app": "weaviate"}  # the official chart's pod label


def test_replicas_and_kafka_come_from_values_files(tools: kube_tools.Tools, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"indexer": {"replicas": 5}, "query": {"replicas": 7},
                                      "kafka": {"bootstrapServers": "b1:9092,b2:9092"}}))
    resources = _resources(kube_tools.render(tools, values))
    assert _one(resources, "Deployment", "indexer")["spec"]["replicas"] == 5
    assert _one(resources, "Deployment", "query")["spec"]["replicas"] == 7
    assert _settings(resources).bootstrap_servers == "b1:9092,b2:9092"


@pytest.mark.parametrize("settings", [{"FRESHET_WEB_BIND": "127.0.0.1"}, {"KAFKA_BOOTSTRAP": "x:9092"}])
def test_the_chart_refuses_settings_it_owns_or_that_are_not_freshet(
        tools: kube_tools.Tools, tmp_path: Path, settings: dict[str, str]) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"settings": settings}))
    with pytest.raises(StackError, match=next(iter(settings))):
        kube_tools.render(tools, values)
