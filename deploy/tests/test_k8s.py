"""deploy/k8s: the kustomize base and production overlay render to manifests
that are valid against the Kubernetes schemas (kubernetes-validate, offline),
and they give SREs what the issue promises: probes, resources, PDBs, HPAs,
NetworkPolicies, secrets by reference, NATS at R3, metrics on every pod.

There is no kubectl in `make test`, so `render` below applies the subset of
kustomize these kustomizations use (resources, namespace, images, replicas,
strategic-merge patches). Where kubectl is installed, its `kubectl kustomize`
output must be the same.
"""

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from yourclaw_host_agent.bootstrap import BootstrapOptions, render_env, render_unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
SERVICES = ["gateway-api", "messaging", "billing", "provisioner"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

Doc = dict[str, Any]


def _merge(dst: Any, src: Any) -> Any:
    """Strategic merge, as far as our patches need: maps merge, lists of named
    items merge by name, anything else is replaced."""
    if isinstance(dst, dict) and isinstance(src, dict):
        out = dict(dst)
        for key, value in src.items():
            out[key] = _merge(dst[key], value) if key in dst else value
        return out
    if (
        isinstance(dst, list)
        and isinstance(src, list)
        and all(isinstance(i, dict) and "name" in i for i in dst + src)
    ):
        out_list = [copy.deepcopy(i) for i in dst]
        added = []
        for item in src:
            for i, existing in enumerate(out_list):
                if existing["name"] == item["name"]:
                    out_list[i] = _merge(existing, item)
                    break
            else:
                added.append(item)
        return added + out_list  # kustomize puts new items first
    return copy.deepcopy(src)


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _pod_containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(directory: Path) -> list[Doc]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            matches = [i for i, d in enumerate(docs) if _key(d) == _key(change)]
            assert matches, f"patch {patch['path']} matches nothing: {_key(change)}"
            for i in matches:
                docs[i] = _merge(docs[i], change)
    for replica in kustomization.get("replicas", []):
        targets = [
            d
            for d in docs
            if d["metadata"]["name"] == replica["name"]
            and d["kind"] in ("Deployment", "StatefulSet")
        ]
        assert targets, f"replicas: no workload {replica['name']}"
        for d in targets:
            d["spec"]["replicas"] = replica["count"]
    for image in kustomization.get("images", []):
        for d in docs:
            for container in _pod_containers(d):
                if container["image"].split(":")[0].split("@")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    tag = image.get("newTag")
                    container["image"] = f"{name}:{tag}" if tag else name
    if "namespace" in kustomization:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = kustomization["namespace"]
    return docs


@pytest.fixture(scope="module", params=["base", "production"])
def manifests(request) -> list[Doc]:
    return render(K8S / request.param)


@pytest.fixture(scope="module")
def production() -> dict[tuple[str, str], Doc]:
    return {_key(d): d for d in render(K8S / "production")}


def test_manifests_are_valid_against_the_kubernetes_schemas(manifests):
    for doc in manifests:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_optional_lag_autoscaler_is_valid_too():
    for doc in yaml.safe_load_all(
        (K8S / "optional/messaging-hpa-lag.yaml").read_text()
    ):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_refused():
    """The validator really checks: a typo in a probe fails."""
    doc = copy.deepcopy(render(K8S / "base")[2])
    assert doc["kind"] == "Deployment"
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "pathh"
    ] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
@pytest.mark.parametrize("overlay", ["base", "production"])
def test_render_matches_kubectl_kustomize(overlay):
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    theirs = {_key(d): d for d in yaml.safe_load_all(out) if d}
    ours = {_key(d): d for d in render(K8S / overlay)}
    assert set(theirs) == set(ours)
    for key, doc in ours.items():
        assert json.loads(json.dumps(doc)) == json.loads(json.dumps(theirs[key])), key


@pytest.mark.parametrize("name", [*SERVICES, "web"])
def test_every_service_is_probed_sized_and_protected(production, name):
    deployment = production[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/")
    assert container["livenessProbe"]["httpGet"]["path"] in ("/healthz", "/")
    assert container["image"].startswith(f"registry.example/yourclaw-{name}:")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert production[("PodDisruptionBudget", name)]["spec"]["minAvailable"] >= 1
    assert deployment["spec"]["replicas"] >= 2


def test_every_workload_restarts_and_every_container_is_probed(manifests):
    # Issue 17 (supervision): a crashed or wedged container is restarted
    # (liveness), a starting or cut-off one gets no traffic (readiness).
    workloads = [d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["name"] for d in workloads} >= {*SERVICES, "web"}
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod.get("restartPolicy", "Always") == "Always", _key(doc)
        for container in pod["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"], (_key(doc), probe)
            # A liveness probe gives a slow start time before it kills.
            live = container["livenessProbe"]
            budget = live.get("initialDelaySeconds", 0) + live.get(
                "periodSeconds", 10
            ) * live.get("failureThreshold", 3)
            assert budget >= 20, _key(doc)


@pytest.mark.parametrize("name", SERVICES)
def test_python_services_probe_healthz_and_readyz_and_are_scraped(production, name):
    pod = production[("Deployment", name)]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert port in {p["containerPort"] for p in container["ports"]}
    config = production[("ConfigMap", "yourclaw-config")]["data"]
    if name != "gateway-api":  # workers: /metrics only with METRICS_PORT set
        assert int(config["METRICS_PORT"]) == port
        assert config["METRICS_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", SERVICES)
def test_secrets_are_referenced_not_inlined(production, name):
    (container,) = production[("Deployment", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    for secret in ("DATABASE_URL", "ENCRYPTION_KEY"):
        assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "yourclaw-secrets"
    for e in container["env"]:
        if any(w in e["name"] for w in ("TOKEN", "SECRET", "KEY", "PASSWORD")):
            assert "value" not in e, e["name"]
    assert ("Secret", "yourclaw-secrets") not in production


def test_gateway_and_messaging_autoscale_on_cpu(production):
    for name in ("gateway-api", "messaging"):
        hpa = production[("HorizontalPodAutoscaler", name)]["spec"]
        assert hpa["scaleTargetRef"]["name"] == name
        assert hpa["maxReplicas"] > hpa["minReplicas"] >= 2
        assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_only_gateway_and_web_take_ingress(production):
    deny = production[("NetworkPolicy", "default-deny-ingress")]["spec"]
    assert deny["podSelector"] == {}
    assert "ingress" not in deny
    public = production[("NetworkPolicy", "public-ingress")]["spec"]
    (expression,) = public["podSelector"]["matchExpressions"]
    assert sorted(expression["values"]) == ["gateway-api", "web"]
    backends = {
        path["backend"]["service"]["name"]
        for rule in production[("Ingress", "yourclaw")]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway-api", "web"}


def test_nats_is_a_three_node_jetstream_cluster_with_r3_streams(production):
    values = yaml.safe_load((K8S / "nats/values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    config = production[("ConfigMap", "yourclaw-config")]["data"]
    assert config["NATS_STREAM_REPLICAS"] == "3"
    assert config["NATS_URL"].startswith("nats://nats.nats.svc")


def test_host_agent_unit_is_what_bootstrap_installs():
    opts = BootstrapOptions(host="10.0.0.7", host_id="h7", nats_url="nats://n:4222")
    unit = (ROOT / "deploy/host-agent/yourclaw-host-agent.service").read_text()
    body = unit[unit.index("[Unit]") :]  # after the header comment
    rendered = render_unit(opts).replace(" (h7)", "")
    assert body.strip() == rendered.strip()
    example = (ROOT / "deploy/host-agent/host-agent.env.example").read_text()
    keys = {
        line.split("=", 1)[0]
        for line in example.splitlines()
        if line and not line.startswith("#")
    }
    assert keys == {
        line.split("=", 1)[0] for line in render_env(opts, capacity=1).splitlines()
    }
    assert "METRICS_PORT=9464" in example
