"""Checking the Helm chart in ``ops/helm/freshet`` offline: ``python -m ops.kube_tools check``.

What it needs is installed once per version outside the clone, under ``Settings().cache_dir``,
like Kafka and Weaviate (:mod:`ops.install`: built in a temporary folder, renamed into place
under a file lock):

* ``helm``: ``go install helm.sh/helm/v4/cmd/helm@<version>`` through the Go module proxy, kept in
  ``<cache>/helm-<version>/bin``.
* ``kubeconform``: ``go install github.com/yannh/kubeconform/cmd/kubeconform@<version>``, kept in
  ``<cache>/kubeconform-<version>/bin``.
* Kubernetes JSON schemas: kubeconform would download them from GitHub, which is out of reach. The
  PyPI package ``kubernetes-validate`` ships them (``pip download``, hash pinned); its schemas
  reference one shared ``_definitions.json`` by an ``https://kubernetes.io/...`` address, so each
  kind is rewritten standalone (the definitions it reaches copied into its ``$defs``) in
  kubeconform's layout, ``<cache>/kubernetes-json-schema-<version>/v<k8s>-standalone-strict/``.

The check lints the chart, renders it with the default values and with each ``ci/*-values.yaml``,
and validates every rendering with ``kubeconform -strict`` against each Kubernetes version in
:data:`KUBERNETES_VERSIONS`. A resource without a schema is a failure (no
``-ignore-missing-schemas``): a schema that cannot be read makes kubeconform skip a resource.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from freshet.errors import StackError
from freshet.settings import Settings
from ops.install import _locked, _run, ensure_go_binary

HELM_MODULE = "helm.sh/helm/v4/cmd/helm"
HELM_VERSION = "v4.3.2"
KUBECONFORM_MODULE = "github.com/yannh/kubeconform/cmd/kubeconform"
KUBECONFORM_VERSION = "v0.8.0"
SCHEMA_PACKAGE = "kubernetes-validate"
SCHEMA_PACKAGE_VERSION = "1.37.0"
SCHEMA_WHEEL_SHA256 = "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
#: The oldest and the newest version the schema package covers; the chart claims kubeVersion >=1.25.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")

CHART = Path(__file__).resolve().parent / "helm" / "freshet"
RELEASE = "freshet"
NAMESPACE = "freshet"

_SHARED_REF = '"/api/_definitions.json#/$defs/'
_LOCAL_REF = re.compile(r'"#/\$defs/([^"]+)"')


@dataclass(frozen=True)
class Tools:
    """The installed binaries and the schema folder kubeconform reads."""

    helm: Path
    kubeconform: Path
    schemas: Path


def ensure_tools(cache: Path) -> Tools:
    """helm, kubeconform and the schemas, each installed on first use."""
    return Tools(helm=ensure_go_binary(cache, "helm", HELM_MODULE, HELM_VERSION),
                 kubeconform=ensure_go_binary(cache, "kubeconform", KUBECONFORM_MODULE, KUBECONFORM_VERSION),
                 schemas=ensure_schemas(cache))


def ensure_schemas(cache: Path) -> Path:
    """The standalone strict schemas of :data:`KUBERNETES_VERSIONS`, from the PyPI package on first use."""
    final = cache / f"kubernetes-json-schema-{SCHEMA_PACKAGE_VERSION}"
    done = [final / f"v{v}-standalone-strict" / "deployment-apps-v1.json" for v in KUBERNETES_VERSIONS]
    if all(p.is_file() for p in done):
        return final
    with _locked(cache, final.name):
        if all(p.is_file() for p in done):
            return final
        python = shutil.which("python3") or sys.executable
        tmp = cache / f".{final.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "wheel").mkdir(parents=True)
        pinned = tmp / "requirements.txt"
        pinned.write_text(f"{SCHEMA_PACKAGE}=={SCHEMA_PACKAGE_VERSION} --hash=sha256:{SCHEMA_WHEEL_SHA256}\n")
        _run([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--only-binary", ":all:", "--require-hashes", "-r", str(pinned), "-d", str(tmp / "wheel")],
             what=f"Kubernetes JSON schemas ({SCHEMA_PACKAGE} {SCHEMA_PACKAGE_VERSION} from PyPI)",
             log=cache / f"{final.name}.install.log")
        wheel = next((tmp / "wheel").glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for version in KUBERNETES_VERSIONS:
                _write_standalone(archive, f"v{version}", tmp / f"v{version}-standalone-strict")
        shutil.rmtree(tmp / "wheel")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return final


def _write_standalone(archive: zipfile.ZipFile, version: str, out: Path) -> None:
    """Each kind's schema of ``version`` with the definitions it reaches in its own ``$defs``."""
    folder = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
    defs: dict[str, Any] = json.loads(archive.read(folder + "_definitions.json"))["$defs"]
    refs = {name: set(_LOCAL_REF.findall(json.dumps(body))) for name, body in defs.items()}
    out.mkdir(parents=True)
    for member in archive.namelist():
        name = member.removeprefix(folder)
        if not member.startswith(folder) or name.startswith(("_", "all.")) or not name.endswith(".json"):
            continue
        text = archive.read(member).decode().replace(_SHARED_REF, '"#/$defs/')
        schema = json.loads(text)
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a part of a kind, never looked up by kubeconform
        reached: set[str] = set()
        todo = set(_LOCAL_REF.findall(text))
        while todo:
            ref = todo.pop()
            reached.add(ref)
            todo |= refs[ref] - reached
        schema["$defs"] = {ref: defs[ref] for ref in sorted(reached)}
        (out / name).write_text(json.dumps(schema, separators=(",", ":")))


def render(tools: Tools, values: Path | None = None, *, kube_version: str = KUBERNETES_VERSIONS[-1]) -> str:
    """``helm template`` of the chart (default values, plus ``values`` when given); raise on failure."""
    argv = [str(tools.helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", kube_version, *(["--values", str(values)] if values else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise StackError(f"helm template failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stderr}",
                         service="helm")
    return proc.stdout


def lint(tools: Tools, values: Path | None = None) -> list[str]:
    """``helm lint --strict`` of the chart; the problems, empty when it passed."""
    argv = [str(tools.helm), "lint", str(CHART), "--strict", *(["--values", str(values)] if values else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    return [] if proc.returncode == 0 else [f"helm lint failed: {' '.join(argv)}\n{proc.stdout}{proc.stderr}"]


def validate(tools: Tools, manifest: str, *, kube_version: str) -> list[str]:
    """``kubeconform -strict`` of a rendering; one line per resource that is not valid, empty when all are."""
    argv = [str(tools.kubeconform), "-strict", "-summary", "-verbose", "-output", "json",
            "-kubernetes-version", kube_version, "-schema-location", str(tools.schemas), "-"]
    proc = subprocess.run(argv, input=manifest, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        resources = json.loads(proc.stdout)["resources"]
    except (ValueError, KeyError) as exc:
        return [f"kubeconform gave no JSON report (exit {proc.returncode}): {exc}\n{proc.stdout}{proc.stderr}"]
    problems = [f"{r['kind']}/{r['name']}: {r['status']} {r.get('msg', '')}".rstrip()
                for r in resources if r.get("status") != "statusValid"]
    if proc.returncode != 0 and not problems:
        problems.append(f"kubeconform exited {proc.returncode}: {proc.stderr}")
    if not resources:
        problems.append("kubeconform validated no resource: the rendering is empty")
    return problems


def values_sets() -> list[Path | None]:
    """The value sets the check renders: the defaults, then each ``ci/*-values.yaml`` of the chart."""
    return [None, *sorted((CHART / "ci").glob("*-values.yaml"))]


def check(cache: Path) -> list[str]:
    """Install what is missing, then lint, render and validate the chart; the failures, empty when it passed."""
    tools = ensure_tools(cache)
    failures: list[str] = []
    for values in values_sets():
        label = values.name if values else "default values"
        failures += [f"[{label}] {p}" for p in lint(tools, values)]
        for version in KUBERNETES_VERSIONS:
            try:
                manifest = render(tools, values, kube_version=version)
            except StackError as exc:
                failures.append(f"[{label}, Kubernetes {version}] {exc}")
                continue
            problems = validate(tools, manifest, kube_version=version)
            failures += [f"[{label}, Kubernetes {version}] {p}" for p in problems]
            kinds = sorted({m.group(1) for m in re.finditer(r"(?m)^kind: (\S+)$", manifest)})
            click.echo(f"{'FAIL' if problems else 'ok  '} {label}, Kubernetes {version}: {', '.join(kinds)}")
    return failures


@click.group()
def main() -> None:
    """The Helm chart's tools: helm and kubeconform from the Go module proxy, schemas from PyPI."""


@main.command("check")
def check_command() -> None:
    """Lint, render (default and ci/ values) and validate the chart with kubeconform -strict."""
    try:
        failures = check(Settings().cache_dir)
    except StackError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    for failure in failures:
        click.secho(failure, fg="red", err=True)
    if failures:
        sys.exit(1)
    click.echo(f"chart {CHART} passed helm lint and kubeconform -strict")


if __name__ == "__main__":
    main()
