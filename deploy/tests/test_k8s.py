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
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from yourclaw_common.nats_auth import helm_users, password_env, users_for
from yourclaw_host_agent.bootstrap import BootstrapOptions, render_env, render_unit
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
SERVICES = ["gateway-api", "messaging", "billing", "provisioner", "llm-proxy"]
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


# cert-manager's kinds are CRDs: kubernetes-validate has no schema for them.
CERT_MANAGER = "cert-manager.io/v1"


def test_manifests_are_valid_against_the_kubernetes_schemas(manifests):
    for doc in manifests:
        if doc["apiVersion"] == CERT_MANAGER:
            assert doc["kind"] in ("Certificate", "ClusterIssuer"), _key(doc)
            continue
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
    image = "yourclaw-web" if name == "web" else "yourclaw-services"
    assert container["image"].startswith(f"registry.example/{image}:")
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
def test_python_services_run_the_one_services_image_with_their_module(production, name):
    (container,) = production[("Deployment", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    module = "yourclaw_" + name.replace("-", "_")
    assert container["command"] == ["python", "-m", module]
    assert importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("name", SERVICES)
def test_secrets_are_referenced_not_inlined(production, name):
    (container,) = production[("Deployment", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    # billing never reads a ciphertext: it does not get the key.
    secrets = (
        ("DATABASE_URL",) if name == "billing" else ("DATABASE_URL", "ENCRYPTION_KEY")
    )
    for secret in secrets:
        assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "yourclaw-secrets"
    for e in container["env"]:
        if any(w in e["name"] for w in ("TOKEN", "SECRET", "KEY", "PASSWORD")):
            assert "value" not in e, e["name"]
    assert ("Secret", "yourclaw-secrets") not in production


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_connects_to_nats_as_its_own_user(production, name):
    (container,) = production[("Deployment", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["NATS_USER"]["value"] == name
    ref = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "yourclaw-secrets", "key": f"nats-password-{name}"}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_connects_to_postgres_as_its_own_role(production, name):
    (container,) = production[("Deployment", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "yourclaw-secrets", "key": f"database-url-{name}"}
    assert ("ENCRYPTION_KEY" in env) == (name != "billing")


def test_only_the_migrate_job_changes_the_schema(production):
    config = production[("ConfigMap", "yourclaw-config")]["data"]
    # A service's role may not create tables: it must not try at start.
    assert config["RUN_MIGRATIONS"] == "false"
    job = production[("Job", "yourclaw-migrate")]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["command"] == ["yourclaw-migrate"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "yourclaw-secrets", "key": "database-url"}
    assert container["image"].startswith("registry.example/yourclaw-services:")
    assert _egress(production, "yourclaw-migrate") == {
        ("kube-system", 53, None, "UDP"),
        ("kube-system", 53, None, "TCP"),
        ("0.0.0.0/0", 5432, None, "TCP"),
    }
    # Nothing but the services' own keys name the owner's URL.
    for doc in production.values():
        if doc["kind"] == "Deployment":
            for c in _pod_containers(doc):
                for e in c.get("env", []):
                    key = e.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
                    assert key != "database-url", doc["metadata"]["name"]


def test_nats_takes_only_its_users_with_their_grants():
    values = yaml.safe_load((K8S / "nats/values.yaml").read_text())
    users = values["config"]["merge"]["authorization"]["users"]
    # What the renderer writes: the operator and every service, each with its
    # grant; passwords only as references to the server's environment.
    assert users == helm_users(users_for([]))
    env = values["container"]["env"]
    for user in users_for([]):
        ref = env[password_env(user)]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "nats-users", "key": user}


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
    assert config["NATS_URL"].startswith("tls://nats.nats.svc")


def _everything(production: dict[tuple[str, str], Doc]) -> dict[tuple[str, str], Doc]:
    """The production overlay by (kind, namespace/name): NATS's namespace too."""
    return {
        (d["kind"], f"{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"): d
        for d in render(K8S / "production")
    }


def test_nats_requires_tls_with_a_certificate_cert_manager_keeps(production):
    values = yaml.safe_load((K8S / "nats/values.yaml").read_text())
    tls = values["config"]["nats"]["tls"]
    assert tls == {"enabled": True, "secretName": "nats-server-tls"}
    docs = _everything(production)
    server = docs[("Certificate", "nats/nats-server")]["spec"]
    assert server["secretName"] == "nats-server-tls"
    # The names clients dial: the in-cluster Service and the hosts' load balancer.
    config = production[("ConfigMap", "yourclaw-config")]["data"]
    host = config["NATS_URL"].removeprefix("tls://").split(":")[0]
    assert {host, "nats.yourclaw.internal"} <= set(server["dnsNames"])
    # Signed by our own CA, the one the services trust, never a public one.
    assert server["issuerRef"]["name"] == "yourclaw-nats-ca"
    ca = docs[("ClusterIssuer", "/yourclaw-nats-ca")]["spec"]["ca"]
    assert docs[("Certificate", "cert-manager/yourclaw-nats-ca")]["spec"]["isCA"]
    assert ca["secretName"] == "yourclaw-nats-ca"
    trust = production[("Certificate", "nats-ca")]["spec"]
    assert trust["issuerRef"]["name"] == "yourclaw-nats-ca"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_verifies_nats_against_our_ca_only(production, name):
    config = production[("ConfigMap", "yourclaw-config")]["data"]
    assert config["NATS_URL"].startswith("tls://")
    pod = production[("Deployment", name)]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-ca")
    assert config["NATS_TLS_CA_FILE"] == mount["mountPath"] + "/ca.crt"
    volume = next(v for v in pod["volumes"] if v["name"] == "nats-ca")
    # ca.crt only: the key beside it in the Secret is not mounted.
    assert volume["secret"] == {
        "secretName": "nats-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_production_settings_accept_the_overlay_nats_url(production, monkeypatch):
    from yourclaw_common.settings import CommonSettings

    config = production[("ConfigMap", "yourclaw-config")]["data"]
    settings = CommonSettings(
        _env_file=None,
        yourclaw_env=config["YOURCLAW_ENV"],
        nats_url=config["NATS_URL"],
    )
    assert settings.nats_url.startswith("tls://")


def _ingress_rules(
    docs: dict[tuple[str, str], Doc], namespace: str, labels: dict[str, str]
):
    """Every ingress rule of `namespace`'s policies that select pods with `labels`."""
    rules = []
    for (kind, where), doc in docs.items():
        if kind != "NetworkPolicy" or not where.startswith(namespace + "/"):
            continue
        spec = doc["spec"]
        if "Ingress" in spec["policyTypes"] and _selects(spec["podSelector"], labels):
            rules += spec.get("ingress", [])
    return rules


NATS_POD = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"}


def _peers_on(rules: list[Doc], port: int) -> list[Doc]:
    return [
        peer
        for rule in rules
        if any(p["port"] == port for p in rule["ports"])
        for peer in rule["from"]
    ]


def test_nats_namespace_denies_ingress_by_default(production):
    docs = _everything(production)
    deny = docs[("NetworkPolicy", "nats/nats-default-deny-ingress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Every NATS port is named by some rule; no rule lets everyone in.
    for rule in _ingress_rules(docs, "nats", NATS_POD):
        assert rule.get("from"), rule


def test_nats_clients_are_the_services_and_the_container_hosts(production):
    docs = _everything(production)
    peers = _peers_on(_ingress_rules(docs, "nats", NATS_POD), 4222)
    from_yourclaw = [
        p
        for p in peers
        if p.get("namespaceSelector", {}).get("matchLabels")
        == {"kubernetes.io/metadata.name": "yourclaw"}
    ]
    (services,) = from_yourclaw
    # The Python services, not web, not any other pod of the namespace.
    for name in SERVICES:
        assert _selects(services["podSelector"], {"app.kubernetes.io/name": name})
    assert not _selects(services["podSelector"], {"app.kubernetes.io/name": "web"})
    # The hosts dial in from their own subnet; nothing else from outside.
    blocks = [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p]
    assert blocks == ["198.51.100.0/24"]
    # Only the release's own pods (the other servers, nats-box) besides.
    others = [p for p in peers if p not in from_yourclaw and "ipBlock" not in p]
    assert others == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}
    ]


def test_nats_monitoring_is_for_prometheus_only(production):
    docs = _everything(production)
    rules = _ingress_rules(docs, "nats", NATS_POD)
    for port in (8222, 7777):
        assert _peers_on(rules, port) == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                },
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "prometheus"}
                },
            }
        ], port
    # The routes (6222) only between the release's pods.
    assert _peers_on(rules, 6222) == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}
    ]


@pytest.mark.parametrize("overlay", ["base", "production"])
def test_tenants_run_the_pinned_openclaw(overlay):
    """Moving the pin in install_openclaw.py moves production's tenant image:
    a cluster that still named the old tag would keep starting the old gateway."""
    config = {_key(d): d for d in render(K8S / overlay)}[
        ("ConfigMap", "yourclaw-config")
    ]["data"]
    repo, _, tag = config["OPENCLAW_IMAGE"].rpartition(":")
    assert repo.endswith("/yourclaw-openclaw")
    assert tag == OPENCLAW_VERSION


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


def test_production_refuses_dev_only_paths(production, monkeypatch, tmp_path):
    from pydantic import ValidationError
    from yourclaw_gateway_api.settings import GatewaySettings

    config = production[("ConfigMap", "yourclaw-config")]["data"]
    assert config["YOURCLAW_ENV"] == "production"
    for doc in production.values():
        for container in _pod_containers(doc):
            names = {env["name"] for env in container.get("env", [])}
            assert not names & {"YOURCLAW_ENV", "DEV_LOGIN_ENABLED"}, container["name"]
    assert "DEV_LOGIN_ENABLED" not in config
    # gateway-api with production's settings and dev sign-in switched on: refused.
    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEV_LOGIN_ENABLED", "true")
    monkeypatch.setenv("DEV_LOGIN_SECRET", "d" * 40)
    with pytest.raises(ValidationError, match="unless YOURCLAW_ENV=dev"):
        GatewaySettings()


def _routed(ingress: Doc, host: str, path: str) -> str | None:
    """The backend service the ingress sends `host` + `path` to, or None."""
    for rule in ingress["spec"]["rules"]:
        if rule["host"] != host:
            continue
        for item in rule["http"]["paths"]:
            prefix = item["path"]
            matches = (
                path == prefix
                if item["pathType"] == "Exact"
                else path == prefix or path.startswith(prefix.rstrip("/") + "/")
            )
            if matches:
                return str(item["backend"]["service"]["name"])
    return None


def test_the_ingress_serves_only_public_routes(production):
    from yourclaw_gateway_api.app import create_app
    from yourclaw_gateway_api.settings import GatewaySettings

    ingress = production[("Ingress", "yourclaw")]
    api = "api.yourclaw.example"
    served = set(create_app(GatewaySettings(_env_file=None)).api.openapi()["paths"])
    served |= {"/docs", "/docs/oauth2-redirect", "/openapi.json"}
    public = {path for path in served if path.startswith("/api/v1/")}
    # The REST API, both webhooks and the assistants' notify route are public...
    assert {
        "/api/v1/users/me",
        "/api/v1/webhooks/twilio/whatsapp",
        "/api/v1/webhooks/stripe",
        "/api/v1/internal/assistants/{assistant_id}/notify",
    } <= public
    for path in public:
        assert _routed(ingress, api, path) == "gateway-api", path
    # ...and nothing else gateway-api serves: probes, metrics and the API docs.
    assert {"/metrics", "/readyz", "/healthz", "/docs", "/openapi.json"} <= (
        served - public
    )
    for path in served - public:
        assert _routed(ingress, api, path) is None, path
    assert _routed(ingress, "app.yourclaw.example", "/dashboard") == "web"


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _egress(production: dict[tuple[str, str], Doc], app: str) -> set[tuple[Any, ...]]:
    """What pods of `app` may reach: (namespace or CIDR, port, end port, protocol)."""
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "yourclaw"}
    allowed: set[tuple[Any, ...]] = set()
    for (kind, _), doc in production.items():
        if kind != "NetworkPolicy" or "Egress" not in doc["spec"]["policyTypes"]:
            continue
        spec = doc["spec"]
        if not _selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    target = peer["ipBlock"]["cidr"]
                elif "namespaceSelector" in peer:
                    target = peer["namespaceSelector"]["matchLabels"][
                        "kubernetes.io/metadata.name"
                    ]
                else:  # a pod of this namespace, by app
                    target = (
                        "pod:"
                        + peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    )
                for port in rule["ports"]:
                    allowed.add(
                        (
                            target,
                            port["port"],
                            port.get("endPort"),
                            port.get("protocol", "TCP"),
                        )
                    )
    return allowed


def test_egress_is_denied_by_default_and_opened_per_service(production):
    deny = production[("NetworkPolicy", "default-deny-egress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Egress"]}
    dns = {("kube-system", 53, None, "UDP"), ("kube-system", 53, None, "TCP")}
    bus_and_db = {("nats", 4222, None, "TCP"), ("0.0.0.0/0", 5432, None, "TCP")}
    https = {("0.0.0.0/0", 443, None, "TCP")}
    hosts = {("0.0.0.0/0", 19100, 29999, "TCP")}
    expected = {
        "web": dns,  # the browser calls gateway-api, not the web server
        "provisioner": dns | bus_and_db,  # hosts are commanded over NATS
        "billing": dns | bus_and_db | https,  # Stripe
        "gateway-api": dns | bus_and_db | https,  # Supabase's JWKS
        # Twilio, tenants' gateways, llm-proxy (voice notes)
        "messaging": dns
        | bus_and_db
        | https
        | hosts
        | {("pod:llm-proxy", 8790, None, "TCP")},
    }
    for app, allowed in expected.items():
        assert production[("Deployment", app)]
        assert _egress(production, app) == allowed, app
