"""The Kubernetes manifests agree with the service they deploy.

No cluster here: the manifests are read as data and checked against what they promise and
what the service and its image actually are, so a setting renamed in the code, a timeout
raised on one side only, or a probe pointed at the wrong port fails here, not in a rollout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service import registry

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8"))
    return document


@pytest.fixture
def pod() -> dict[str, Any]:
    spec: dict[str, Any] = load("deployment.yaml")["spec"]["template"]["spec"]
    return spec


@pytest.fixture
def container(pod: dict[str, Any]) -> dict[str, Any]:
    [only] = pod["containers"]
    return dict(only)


@pytest.fixture
def environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's SERVICE_* variables, with the example Secret's value for the DSN."""
    assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
        load("configmap.yaml")["metadata"]["name"]
    ]
    environ = dict(load("configmap.yaml")["data"])
    secret = load("secret.example.yaml")
    for variable in container["env"]:
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"]
        environ[variable["name"]] = secret["stringData"][reference["key"]]
    return environ


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    listed = set(load("kustomization.yaml")["resources"])
    present = {path.name for path in MANIFESTS.glob("*.yaml")}
    assert listed == present - {"kustomization.yaml", "secret.example.yaml"}


def test_the_configuration_is_valid_and_the_dsn_comes_from_the_secret(
    environment: dict[str, str],
) -> None:
    assert "SERVICE_DB__URL" not in load("configmap.yaml")["data"]  # the password: Secret only
    config = registry.load(environment)  # raises ConfigError naming any unknown or bad key
    assert config.resource_settings["db"].url.startswith("postgresql://")


def test_the_grace_period_covers_the_shutdown_timeout_which_covers_the_workers(
    pod: dict[str, Any], environment: dict[str, str]
) -> None:
    config = registry.load(environment)
    graces = sum(item.spec.grace for item in config.workers)
    assert graces < config.settings.shutdown_timeout < pod["terminationGracePeriodSeconds"]


def test_the_probes_ask_the_ops_server(
    container: dict[str, Any], environment: dict[str, str]
) -> None:
    [port] = container["ports"]
    assert port["containerPort"] == registry.load(environment).settings.ops_port
    assert registry.load(environment).settings.ops_host == "0.0.0.0"  # reachable from kubelet
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/livez", port["name"]),
        "livenessProbe": ("/livez", port["name"]),
        "readinessProbe": ("/readyz", port["name"]),
    }


def test_it_runs_as_the_images_unprivileged_user_with_nothing_to_spare(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [image_user] = re.findall(r"^USER (\d+)$", dockerfile, re.MULTILINE)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(image_user)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"requests", "limits"} <= set(container["resources"])


def test_rollouts_surge_before_they_stop_anything() -> None:
    strategy = load("deployment.yaml")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
