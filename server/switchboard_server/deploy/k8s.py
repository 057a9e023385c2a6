"""``switchboard render --target k8s``: a kustomize base and the ``dev``, ``prod`` and
``monitoring`` overlays.

Per service a Deployment whose pods run the app and its Envoy sidecar (the app on
loopback, the sidecar's ingress on the pod's address), a headless Service (its name
resolves to every ready pod, which the callers' sidecars list as DNS clusters), an HPA
on CPU, a PodDisruptionBudget and a NetworkPolicy that admits only the callers the
topology names, plus Prometheus in ``SWITCHBOARD_DEPLOY_MONITORING_NAMESPACE`` on the
scrape port. The edge runs the front door beside its Envoy. The rendered Envoy configs
are ConfigMaps made by kustomize's generator, so a changed config rolls the pods.

The kubelet's gRPC probes reach an app through its sidecar's ingress (the app listens
on loopback only, as Istio's probe rewrite does): startup and readiness ask for the
service's own health, so a pod is ready only when both answer; the sidecar's own probes
ask Envoy's ``/ready`` on the scrape listener.
"""

from __future__ import annotations

from switchboard_server.config import Settings
from switchboard_server.deploy.addresses import container_plan, k8s_addresses
from switchboard_server.deploy.envoy import (
    CONTAINER_JWKS_DIR,
    EDGE,
    EDGE_JWKS_SECRET,
    mounts_jwks,
    render_envoys,
)
from switchboard_server.deploy.k8s_objects import (
    GRPC,
    REDIS,
    REDIS_PORT,
    SCRAPE,
    Doc,
    container_security,
    deployment,
    hpa,
    meta,
    network_policy,
    pdb,
    pod_service,
    redis,
    service_monitors,
)
from switchboard_server.deploy.mesh_tls import certs_secret, identity_mount
from switchboard_server.deploy.pods import (
    DATA_DIR,
    ENVOY_CONFIG_DIR,
    app_command,
    app_env,
    envoy_command,
    frontdoor_command,
)
from switchboard_server.deploy.render import dump, dump_all
from switchboard_server.mesh.topology import Topology

SETTINGS_MAP = "switchboard-settings"
REDIS_SECRET = "switchboard-redis"
CONTEXT = "context"  # the service that uses Redis


class K8sRender:
    """Every file under ``deploy/k8s/`` by relative path."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.settings = settings
        self.deploy = settings.deploy
        self.plan = container_plan(topology, settings)
        self.addresses = k8s_addresses(self.plan, settings)
        self.first = {name: group[0] for name, group in self.plan.replicas.items()}

    # -- the files ---------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        files: dict[str, str] = {}
        base = ["namespace.yaml", "redis.yaml"]
        files["base/namespace.yaml"] = dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(self.deploy.namespace)}
        )
        files["base/redis.yaml"] = dump_all(redis(self.deploy, CONTEXT))
        for service in self.plan.topology.services:
            files[f"base/{service}.yaml"] = dump_all(self._service_docs(service))
            base.append(f"{service}.yaml")
        files["base/edge.yaml"] = dump_all(self._edge_docs())
        base.append("edge.yaml")
        for name, text in self._envoy_files(self.deploy.trace_sample_ratio).items():
            files[f"base/envoy/{name}"] = text
        files["base/kustomization.yaml"] = dump(self._base_kustomization(base))
        for name, text in self._envoy_files(self.deploy.dev_trace_sample_ratio).items():
            files[f"overlays/dev/envoy/{name}"] = text
        files["overlays/dev/kustomization.yaml"] = dump(self._dev())
        files["overlays/prod/kustomization.yaml"] = dump(self._prod())
        files["overlays/monitoring/servicemonitors.yaml"] = dump_all(
            service_monitors([EDGE, *self.plan.topology.services], without_app=EDGE)
        )
        files["overlays/monitoring/kustomization.yaml"] = dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": self.deploy.namespace,
                "resources": ["../prod", "servicemonitors.yaml"],
            }
        )
        return files

    def _envoy_files(self, ratio: float) -> dict[str, str]:
        configs = render_envoys(
            self.plan,
            self.addresses,
            self.settings,
            list(self.first.values()),
            otlp_endpoint=self.deploy.k8s_otlp_endpoint,
            trace_sample_ratio=ratio,
            sds_dir=ENVOY_CONFIG_DIR,
        )
        out = {"edge.yaml": dump(configs[EDGE])}
        for service, replica in self.first.items():
            out[f"{service}.yaml"] = dump(configs[f"{replica.name}.sidecar"])
        for name in self._sds_names(EDGE, *self.first):
            out[f"sds/{name}"] = dump(configs[name.removesuffix(".yaml")])
        return out

    def _sds_names(self, *identities: str) -> list[str]:
        """The SDS files of the identities, in the Envoy ConfigMaps (unless insecure)."""
        if self.settings.mesh.insecure:
            return []
        return [f"{identity}.{kind}.yaml" for identity in identities for kind in ("cert", "ca")]

    def _generators(self, directory: str, behavior: str | None) -> list[Doc]:
        names = [EDGE, *self.plan.topology.services]
        generators = []
        for name in names:
            sds = [f"{f}={directory}/sds/{f}" for f in self._sds_names(name)]
            generator: Doc = {
                "name": f"envoy-{name}",
                "files": [f"envoy.yaml={directory}/{name}.yaml", *sds],
            }
            if behavior:
                generator["behavior"] = behavior
            generators.append(generator)
        return generators

    def _settings_literals(self, ratio: float) -> list[str]:
        return [
            "SWITCHBOARD_LOG_FORMAT=json",
            f"SWITCHBOARD_OBS_OTLP_ENDPOINT={self.deploy.k8s_otlp_endpoint}",
            f"SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO={ratio}",
        ]

    def _base_kustomization(self, resources: list[str]) -> Doc:
        settings_map = {
            "name": SETTINGS_MAP,
            "literals": self._settings_literals(self.deploy.trace_sample_ratio),
        }
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": self.deploy.namespace,
            "resources": resources,
            "configMapGenerator": [*self._generators("envoy", None), settings_map],
        }

    def _dev(self) -> Doc:
        """Everything sampled (100 %), as locally and in Compose."""
        settings_map = {
            "name": SETTINGS_MAP,
            "behavior": "replace",
            "literals": self._settings_literals(self.deploy.dev_trace_sample_ratio),
        }
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../../base"],
            "configMapGenerator": [*self._generators("envoy", "replace"), settings_map],
        }

    def _prod(self) -> Doc:
        """The base (10 % of new traces) with an external Redis (its URL from the Secret
        ``switchboard-redis``, key ``url``, that the operator creates), no in-cluster
        Redis, and at least ``SWITCHBOARD_DEPLOY_HPA_MIN_REPLICAS`` of each service."""
        patches: list[Doc] = []
        for kind, api in (
            ("StatefulSet", "apps/v1"),
            ("Service", "v1"),
            ("NetworkPolicy", "networking.k8s.io/v1"),
        ):
            patches.append(
                {
                    "patch": dump(
                        {
                            "$patch": "delete",
                            "apiVersion": api,
                            "kind": kind,
                            "metadata": {"name": REDIS},
                        }
                    ).rstrip()
                }
            )
        redis_env = [
            {
                "name": "SWITCHBOARD_CONTEXT_REDIS_URL",
                "value": None,  # a strategic merge drops the base's in-cluster URL
                "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": "url"}},
            }
        ]
        context_patch = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": CONTEXT},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "env": redis_env}]}}},
        }
        patches.append({"patch": dump(context_patch).rstrip()})
        for service in [EDGE, *self.plan.topology.services]:
            replicas = self.plan.replicas.get(service, ())
            minimum = max(self.deploy.hpa_min_replicas, len(replicas))
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": service},
                "spec": {"minReplicas": minimum},
            }
            patches.append({"patch": dump(hpa).rstrip()})
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../../base"],
            "patches": patches,
        }

    # -- per service -------------------------------------------------------------------

    def _callers(self, service: str) -> list[str]:
        topology = self.plan.topology
        callers = [name for name, spec in topology.services.items() if service in spec.calls]
        if service in topology.edge_routes:
            callers.insert(0, EDGE)
        return callers

    def _service_docs(self, service: str) -> list[Doc]:
        replica = self.first[service]
        spec = self.plan.topology.services[service]
        env = app_env(
            replica,
            otlp_endpoint="",
            trace_sample_ratio=0.0,
            drain_delay_s=self.settings.mesh.app_drain_delay_s,
        )
        for key in (
            "SWITCHBOARD_LOG_FORMAT",
            "SWITCHBOARD_OBS_OTLP_ENDPOINT",
            "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO",
        ):
            env.pop(key)  # from the settings ConfigMap (per overlay)
        if service == CONTEXT:
            env["SWITCHBOARD_CONTEXT_STORE"] = "redis"
            env["SWITCHBOARD_CONTEXT_REDIS_URL"] = f"redis://{REDIS}:{REDIS_PORT}/0"
        # Through the sidecar's plaintext health route (the kubelet has no client
        # certificate for its mTLS ingress): the sidecar and the app checked together.
        health_port = self.deploy.scrape_port
        grpc_probe = {"port": health_port, "service": spec.grpc_service}
        app = {
            "name": "app",
            "image": self.deploy.app_image,
            "command": app_command(service),
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "envFrom": [{"configMapRef": {"name": SETTINGS_MAP}}],
            "startupProbe": {"grpc": grpc_probe, "periodSeconds": 2, "failureThreshold": 60},
            "readinessProbe": {"grpc": grpc_probe, "periodSeconds": 5, "failureThreshold": 2},
            # The overall status; more patient than the sidecar's own liveness, so a dead
            # sidecar is restarted before its app is.
            "livenessProbe": {
                "grpc": {"port": health_port},
                "periodSeconds": 10,
                "timeoutSeconds": 2,
                "failureThreshold": 6,
            },
            **self._app_container_common(),
            "volumeMounts": [
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
        sidecar = self._envoy_container(service, replica.sidecar_port)
        volumes = [
            {"name": "data", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "envoy-config", "configMap": {"name": f"envoy-{service}"}},
        ]
        self._certs(service, sidecar, volumes)
        d = self.deploy
        return [
            deployment(d, service, [app, sidecar], volumes, scrape_path="/metrics"),
            pod_service(d, service, replica.sidecar_port, headless=True),
            hpa(d, service, len(self.plan.replicas[service])),
            pdb(service),
            network_policy(
                service, replica.sidecar_port, self._callers(service), scrape=self._scrape()
            ),
        ]

    def _edge_docs(self) -> list[Doc]:
        port = self.plan.edge_port
        frontdoor = {
            "name": "frontdoor",
            "image": self.deploy.app_image,
            "command": frontdoor_command(self.plan),
            "env": [{"name": "SWITCHBOARD_HOST", "value": "127.0.0.1"}],
            "envFrom": [{"configMapRef": {"name": SETTINGS_MAP}}],
            # Overall health through the edge: every exposed service routable.
            "startupProbe": {"grpc": {"port": port}, "periodSeconds": 2, "failureThreshold": 90},
            "readinessProbe": {"grpc": {"port": port}, "periodSeconds": 5, "failureThreshold": 2},
            **self._app_container_common(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        volumes = [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "envoy-config", "configMap": {"name": f"envoy-{EDGE}"}},
        ]
        d = self.deploy
        envoy = self._envoy_container(EDGE, port)
        if mounts_jwks(self.settings):
            # The public JWKS only; created by hand or by whatever rotates the keys:
            # kubectl create secret generic switchboard-edge-jwks --from-file=jwks.json
            volumes.append({"name": "jwks", "secret": {"secretName": EDGE_JWKS_SECRET}})
            envoy["volumeMounts"].append(
                {"name": "jwks", "mountPath": CONTAINER_JWKS_DIR, "readOnly": True}
            )
        self._certs(EDGE, envoy, volumes)
        containers = [frontdoor, envoy]
        return [
            deployment(d, EDGE, containers, volumes, scrape_path="/stats/prometheus"),
            pod_service(d, EDGE, port, headless=False),
            hpa(d, EDGE, 1),
            pdb(EDGE),
            network_policy(EDGE, port, None, scrape=self._scrape()),  # clients: anyone
        ]

    def _scrape(self) -> tuple[str, int]:
        return self.deploy.monitoring_namespace, self.deploy.scrape_port

    # -- building blocks ---------------------------------------------------------------

    def _app_container_common(self) -> Doc:
        d = self.deploy
        return {
            "resources": {
                "requests": {"cpu": d.app_cpu_request, "memory": d.app_memory_request},
                "limits": {"cpu": d.app_cpu_limit, "memory": d.app_memory_limit},
            },
            "securityContext": container_security(),
        }

    def _certs(self, identity: str, envoy: Doc, volumes: list[Doc]) -> None:
        """Mount the identity's certificate Secret into its Envoy (unless insecure)."""
        if self.settings.mesh.insecure:
            return
        volumes.append({"name": "certs", "secret": {"secretName": certs_secret(identity)}})
        envoy["volumeMounts"].append(
            {"name": "certs", "mountPath": identity_mount(identity), "readOnly": True}
        )

    def _envoy_container(self, name: str, port: int) -> Doc:
        d = self.deploy
        config = "edge" if name == EDGE else f"{name}.sidecar"
        command = envoy_command(config, self.settings)
        command[2] = f"{ENVOY_CONFIG_DIR}/envoy.yaml"
        ready = {"httpGet": {"path": "/ready", "port": d.scrape_port}}
        return {
            "name": "envoy",
            "image": d.envoy_image,
            "command": command,
            "env": [
                {
                    "name": "SWITCHBOARD_ENVOY_NAME",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ],
            "ports": [
                {"name": GRPC, "containerPort": port, "protocol": "TCP"},
                {"name": SCRAPE, "containerPort": d.scrape_port, "protocol": "TCP"},
            ],
            "startupProbe": {**ready, "periodSeconds": 1, "failureThreshold": 30},
            "readinessProbe": {**ready, "periodSeconds": 5, "failureThreshold": 2},
            "livenessProbe": {
                **ready,
                "periodSeconds": 10,
                "timeoutSeconds": 2,
                "failureThreshold": 3,
            },
            "resources": {
                "requests": {"cpu": d.envoy_cpu_request, "memory": d.envoy_memory_request},
                "limits": {"cpu": d.envoy_cpu_limit, "memory": d.envoy_memory_limit},
            },
            "securityContext": container_security(),
            "volumeMounts": [
                {"name": "envoy-config", "mountPath": ENVOY_CONFIG_DIR, "readOnly": True}
            ],
        }
