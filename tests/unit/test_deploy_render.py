"""`switchboard render`: the committed renderings are fresh, the three targets carry the
same Envoy features, Compose pods and Kubernetes manifests are wired as documented."""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import pytest
import yaml

from switchboard_server.config import Settings, settings_table
from switchboard_server.deploy.envoy import CONTAINER_JWKS_FILE, container_mesh_settings
from switchboard_server.deploy.mesh_tls import CONTAINER_CERTS_DIR, container_tls
from switchboard_server.deploy.pods import ENVOY_CONFIG_DIR
from switchboard_server.deploy.render import render_files
from switchboard_server.mesh.addresses import CONTAINER_ASSET_ROOT
from switchboard_server.mesh.render import render_all
from switchboard_server.mesh.security.mtls import secure_all
from switchboard_server.mesh.topology import load_topology, make_plan
from tests.support.deploy import (
    ANYONE,
    ROOT,
    admitted_calls,
    default_settings,
    k8s_problems,
    without_addressing,
)

COMMITTED = {"compose": ROOT / "docker", "k8s": ROOT / "deploy" / "k8s"}
# Under docker/ only these are rendered; the rest (rules, dashboards) is written by hand.
COMPOSE_OWNED = ("compose.yaml", ".env", "prometheus/prometheus.yml", "envoy/")


@pytest.fixture(scope="module")
def settings() -> Settings:
    return default_settings()


@functools.cache
def _render(target: str) -> dict[str, str]:
    """A target rendered with the default settings (once per test session)."""
    settings = default_settings()
    return render_files(target, load_topology(settings.mesh.topology_file), settings)


def _committed(target: str) -> dict[str, str]:
    root = COMMITTED[target]
    files = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    if target == "compose":
        files = {k: v for k, v in files.items() if k.startswith(COMPOSE_OWNED)}
    return files


@pytest.mark.parametrize("target", ["compose", "k8s"])
def test_committed_rendering_matches_a_fresh_render(target: str, settings: Settings) -> None:
    fresh = _render(target)
    committed = _committed(target)
    where = COMMITTED[target].relative_to(ROOT)
    stale = sorted(set(committed) ^ set(fresh))
    changed = sorted(k for k in set(fresh) & set(committed) if fresh[k] != committed[k])
    message = (
        f"{where} differs from a fresh `switchboard render --target {target}`: "
        f"missing or extra {stale}, changed {changed}; run `make render` and commit the result"
    )
    assert not stale, message
    assert not changed, message


def _envoy_file_paths(text: str) -> set[str]:
    """Every file an Envoy config names: direct-response bodies, descriptor sets."""
    return set(re.findall(r"(?:filename|proto_descriptor): (\S+)", text))


@pytest.mark.parametrize("target", ["compose", "k8s"])
def test_container_renderings_name_the_envoy_images_files_not_the_checkouts(target: str) -> None:
    # Rendered in one checkout, committed, compared in another: no host path may leak in.
    files = _render(target)
    assert not [path for path, text in files.items() if str(ROOT) in text]
    named = set().union(*(_envoy_file_paths(t) for p, t in files.items() if "envoy/" in p))
    assert f"{CONTAINER_ASSET_ROOT}/web/index.html" in named
    assert f"{CONTAINER_ASSET_ROOT}/api_descriptor.binpb" in named
    # ... and the Envoy image has each of them where the config says.
    dockerfile = (ROOT / "docker" / "envoy.Dockerfile").read_text()
    copies = dict(
        (dest, src) for src, dest in re.findall(r"^COPY (server/\S+) (\S+)$", dockerfile, re.M)
    )
    # Mounted, not in the image: the JWKS and each identity's certificates.
    mounted = {p for p in named if p == CONTAINER_JWKS_FILE or p.startswith(CONTAINER_CERTS_DIR)}
    assert named - mounted == {p for p in named if p.startswith(CONTAINER_ASSET_ROOT)}
    for path in named - mounted:
        dest = next((d for d in copies if path == d or path.startswith(d + "/")), None)
        assert dest is not None, f"{path} is not in the Envoy image"
        assert (ROOT / (copies[dest] + path.removeprefix(dest))).is_file(), path


def test_the_local_target_is_what_switchboard_up_runs() -> None:
    files = _render("local")
    assert set(files) == {
        "edge.yaml", "classification-0.sidecar.yaml", "context-0.sidecar.yaml",
        "orchestration-0.sidecar.yaml",
    }  # fmt: skip
    edge = yaml.safe_load(files["edge.yaml"])["static_resources"]["listeners"][0]
    assert edge["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}


# -- the same Envoy features in every target -----------------------------------------------


def _envoys(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """Per target: the edge's and each service's (first) sidecar config, by service."""
    # `switchboard up` traces to its own receiver on loopback, sampling every new trace.
    # The container edges authenticate clients against a mounted JWKS; so does `up`'s.
    mesh = container_mesh_settings(settings).mesh
    plan = make_plan(load_topology(mesh.topology_file), mesh)
    local = render_all(plan, mesh, "127.0.0.1:4317", trace_sample_ratio=1.0)
    # ... and the same mTLS and RBAC, the certificates where the containers mount them.
    tls = container_tls(settings, ENVOY_CONFIG_DIR)
    assert tls is not None
    local = secure_all(local, plan, tls)
    compose = {
        k.removeprefix("envoy/").removesuffix(".yaml"): yaml.safe_load(v)
        for k, v in _render("compose").items()
        if k.startswith("envoy/") and not k.endswith((".cert.yaml", ".ca.yaml"))  # not SDS
    }
    k8s = {
        k.removeprefix("overlays/dev/envoy/").removesuffix(".yaml"): yaml.safe_load(v)
        for k, v in _render("k8s").items()
        if k.startswith("overlays/dev/envoy/") and "/sds/" not in k
    }
    by_service = {
        "local": {k.split("-")[0].removesuffix(".sidecar"): v for k, v in local.items()},
        "compose": {k.split("-")[0]: v for k, v in compose.items()},
        "k8s": k8s,
    }
    return by_service


def test_every_target_runs_the_same_envoy_features(settings: Settings) -> None:
    """Retries, timeouts, circuit breakers, outlier detection, health checks, rate
    limits, tracing, filters: everything but addressing is identical across targets
    (the local mesh samples like Compose and the dev overlay, all new traces)."""
    envoys = _envoys(settings)
    assert set(envoys["local"]) == set(envoys["compose"]) == set(envoys["k8s"])
    for name, local in envoys["local"].items():
        expected = without_addressing(local)
        for target in ("compose", "k8s"):
            assert without_addressing(envoys[target][name]) == expected, (target, name)
    # ...and the addressing really differs: DNS clusters and public listeners in pods.
    edge_local = envoys["local"]["edge"]["static_resources"]
    edge_k8s = envoys["k8s"]["edge"]["static_resources"]
    assert {c["name"]: c.get("type") for c in edge_local["clusters"]}["orchestration"] == "STATIC"
    orchestration = {c["name"]: c for c in edge_k8s["clusters"]}["orchestration"]
    assert orchestration["cluster_type"]["name"] == "envoy.cluster.dns"
    assert orchestration["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"] == {
        "address": {"socket_address": {"address": "orchestration", "port_value": 10053}}
    }
    assert edge_k8s["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"
    # The features the issue names are there to compare in the first place.
    egress = envoys["k8s"]["orchestration"]["static_resources"]
    context = {c["name"]: c for c in egress["clusters"]}["context"]
    assert {"circuit_breakers", "outlier_detection", "health_checks"} <= set(context)
    hcm = egress["listeners"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert any("retry_policy" in r.get("route", {}) for r in routes)


def test_k8s_base_samples_a_tenth_of_new_traces_and_dev_all(settings: Settings) -> None:
    files = _render("k8s")

    def ratio(path: str) -> float:
        hcm = yaml.safe_load(files[path])["static_resources"]["listeners"][0]["filter_chains"][0]
        value: float = hcm["filters"][0]["typed_config"]["tracing"]["random_sampling"]["value"]
        return value

    assert ratio("base/envoy/edge.yaml") == pytest.approx(10.0)
    assert ratio("overlays/dev/envoy/edge.yaml") == pytest.approx(100.0)
    base = yaml.safe_load(files["base/kustomization.yaml"])
    literals = base["configMapGenerator"][-1]["literals"]
    assert "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO=0.1" in literals


# -- Compose -------------------------------------------------------------------------------


def _compose(settings: Settings) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_render("compose")["compose.yaml"])
    return doc


def test_compose_pods_share_the_sidecars_namespace_and_gate_startup_on_health(
    settings: Settings,
) -> None:
    compose = _compose(settings)
    services = compose["services"]
    envoys = {
        k.removeprefix("envoy/").removesuffix(".yaml"): yaml.safe_load(v)
        for k, v in _render("compose").items()
        if k.startswith("envoy/") and not k.endswith((".cert.yaml", ".ca.yaml"))  # not SDS
    }
    apps = {name: s for name, s in services.items() if name.endswith("-app")}
    assert set(apps) == {"classification-0-app", "context-0-app", "orchestration-0-app"}
    for name, app in apps.items():
        sidecar = name.removesuffix("-app")
        assert app["network_mode"] == f"service:{sidecar}"
        assert services[sidecar]["image"] == settings.deploy.envoy_image
        assert app["image"] == settings.deploy.app_image
        # The health check asks grpc.health.v1 through the sidecar's plaintext scrape
        # listener (its mTLS ingress wants a client certificate), which forwards the
        # Check alone to the app.
        test = app["healthcheck"]["test"]
        assert test[:3] == ["CMD", "switchboard-health", "--address"]
        listeners = envoys[f"{sidecar}.sidecar"]["static_resources"]["listeners"]
        scrape = next(lst for lst in listeners if lst["name"] == "scrape")
        assert test[3] == f"127.0.0.1:{scrape['address']['socket_address']['port_value']}"
        hcm = scrape["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        health = [r for r in routes if r["route"]["cluster"] == "local_app"]
        assert [r["match"] for r in health] == [{"path": "/grpc.health.v1.Health/Check"}]
        ingress = next(lst for lst in listeners if lst["name"] == "ingress")
        assert "transport_socket" in ingress["filter_chains"][0]
    for name, service in services.items():
        assert service["init"] is True, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    orchestration = apps["orchestration-0-app"]["depends_on"]
    assert orchestration["classification-0-app"] == {"condition": "service_healthy"}
    assert orchestration["context-0-app"] == {"condition": "service_healthy"}
    assert apps["context-0-app"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert apps["context-0-app"]["environment"]["SWITCHBOARD_CONTEXT_STORE"] == "redis"
    assert services["edge"]["ports"] == ["8080:8080"]
    assert {"redis", "jaeger", "prometheus", "grafana"} <= set(services)


def test_every_switchboard_variable_the_renderings_set_is_a_setting(settings: Settings) -> None:
    known = {name for name, _, _ in settings_table()} | {"SWITCHBOARD_ENVOY_NAME"}
    known |= {"SWITCHBOARD_ORCHESTRATION_CLASSIFICATION_TARGET"}  # checked just below
    texts = [*_render("compose").values(), *_render("k8s").values()]
    used = {m for text in texts for m in re.findall(r"\bSWITCHBOARD_[A-Z0-9_]+", text)}
    assert used, "no settings found"
    assert used <= known, sorted(used - known)


# -- Kubernetes ------------------------------------------------------------------------------


def _base_docs(settings: Settings) -> list[dict[str, Any]]:
    docs = []
    for path, text in _render("k8s").items():
        if path.startswith("base/") and not path.startswith("base/envoy/"):
            docs += [d for d in yaml.safe_load_all(text) if d and "kind" in d]
    return [d for d in docs if d["kind"] != "Kustomization"]


def test_k8s_base_has_no_problem_the_schemas_miss(settings: Settings) -> None:
    docs = _base_docs(settings)
    assert k8s_problems(docs) == []
    kinds = {d["kind"] for d in docs}
    assert kinds >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "StatefulSet", "Namespace",
    }  # fmt: skip
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name in ("classification", "context", "orchestration"):
        assert services[name]["spec"]["clusterIP"] == "None"  # headless: every pod an endpoint


def test_the_extra_checks_catch_what_they_claim(settings: Settings) -> None:
    docs = _base_docs(settings)
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    pdb["spec"]["minAvailable"] = 1
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    app["readinessProbe"]["grpc"]["port"] = 9999
    app["ports"] = [{"containerPort": 1, "protocol": "tcp"}]
    app["securityContext"]["readOnlyRootFilesystem"] = False
    app["env"][0]["valueFrom"] = {"fieldRef": {"fieldPath": "metadata.name"}}
    problems = "\n".join(k8s_problems(docs))
    assert "both minAvailable and maxUnavailable" in problems
    assert "probes port 9999" in problems
    assert "'tcp' not in" in problems
    assert "root filesystem not read-only" in problems
    assert "has both value and valueFrom" in problems


def test_network_policies_admit_exactly_the_topology_call_graph(settings: Settings) -> None:
    topology = load_topology(settings.mesh.topology_file)
    port_of = {name: spec.sidecar_port for name, spec in topology.services.items()}
    port_of |= {"edge": settings.mesh.edge_port, "redis": 6379}
    expected = {
        (caller, callee) for caller, spec in topology.services.items() for callee in spec.calls
    }
    expected |= {("edge", name) for name in topology.edge_routes}
    expected |= {(ANYONE, "edge"), ("context", "redis")}
    docs = _base_docs(settings)
    assert admitted_calls(docs, port_of) == expected
    # Prometheus (the monitoring namespace) reaches every pod's scrape port and only that.
    scrape = settings.deploy.scrape_port
    for doc in (
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] != "redis"
    ):
        rules = doc["spec"]["ingress"]
        monitoring = [r for r in rules if "namespaceSelector" in r.get("from", [{}])[0]]
        assert [p["port"] for r in monitoring for p in r["ports"]] == [scrape]


# -- client authentication at the container edges ------------------------------------


def _edge_jwt(files: dict[str, str], path: str) -> dict[str, Any] | None:
    filters = yaml.safe_load(files[path])["static_resources"]["listeners"][0]["filter_chains"][0]
    hcm = filters["filters"][0]["typed_config"]
    found = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn"]
    return found[0]["typed_config"] if found else None


def test_container_edges_check_tokens_against_the_mounted_jwks(settings: Settings) -> None:
    compose, k8s = _render("compose"), _render("k8s")
    for files, path in ((compose, "envoy/edge.yaml"), (k8s, "base/envoy/edge.yaml")):
        jwt = _edge_jwt(files, path)
        assert jwt is not None, path
        provider = jwt["providers"]["switchboard"]
        assert provider["local_jwks"] == {"filename": CONTAINER_JWKS_FILE}
    edge = yaml.safe_load(compose["compose.yaml"])["services"]["edge"]
    assert "./auth/jwks:/etc/switchboard/jwks:ro" in edge["volumes"]
    pod = next(d for d in yaml.safe_load_all(k8s["base/edge.yaml"]) if d["kind"] == "Deployment")
    spec = pod["spec"]["template"]["spec"]
    assert {"name": "jwks", "secret": {"secretName": "switchboard-edge-jwks"}} in spec["volumes"]
    envoy = next(c for c in spec["containers"] if c["name"] == "envoy")
    assert {"name": "jwks", "mountPath": "/etc/switchboard/jwks", "readOnly": True} in envoy[
        "volumeMounts"
    ]


def test_an_insecure_container_edge_mounts_no_jwks_and_checks_no_token(
    settings: Settings,
) -> None:
    insecure = dataclasses.replace(
        settings, mesh=settings.mesh.model_copy(update={"insecure": True})
    )
    files = render_files("compose", load_topology(insecure.mesh.topology_file), insecure)
    assert _edge_jwt(files, "envoy/edge.yaml") is None
    edge = yaml.safe_load(files["compose.yaml"])["services"]["edge"]
    assert not [v for v in edge["volumes"] if "jwks" in v]
