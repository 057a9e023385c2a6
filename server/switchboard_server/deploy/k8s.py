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

from pathlib import Path

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
from switchboard_server.deploy.variants import (
    COMPARATOR,
    ROLLOUT_MOUNT,
    callees_with_variants,
    comparator_address,
    comparator_docs,
    comparator_monitor,
    kubelet_runtime_layers,
    label_variant,
    rollout_volumes,
    with_variants,
)
from switchboard_server.mesh.rollout.variants import variant_env
from switchboard_server.mesh.topology import STABLE, Replica, Topology, variant_cluster

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
        self.variants = with_variants(self.plan.topology)

    # -- the files ---------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        files: dict[str, str] = {}
        base = ["namespace.yaml", "redis.yaml"]
        files["base/namespace.yaml"] = dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(self.deploy.namespace)}
        )
        files["base/redis.yaml"] = dump_all(redis(self.deploy, CONTEXT))
        for service, spec in self.plan.topology.services.items():
            docs = self._service_docs(service)
            for variant in spec.variants:  # its own Deployment and Service (.variants)
                docs += self._service_docs(service, variant)
            files[f"base/{service}.yaml"] = dump_all(docs)
            base.append(f"{service}.yaml")
        if self.variants:
            senders = [
                variant_cluster(name, variant)
                for name in self.variants
                for variant in self.plan.topology.services[name].variant_names()
            ]
            files[f"base/{COMPARATOR}.yaml"] = dump_all(comparator_docs(self.settings, senders))
            base.append(f"{COMPARATOR}.yaml")
        files["base/edge.yaml"] = dump_all(self._edge_docs())
        base.append("edge.yaml")
        for name, text in self._envoy_files(self.deploy.trace_sample_ratio).items():
            files[f"base/envoy/{name}"] = text
        files["base/kustomization.yaml"] = dump(self._base_kustomization(base))
        for name, text in self._envoy_files(self.deploy.dev_trace_sample_ratio).items():
            files[f"overlays/dev/envoy/{name}"] = text
        files["overlays/dev/kustomization.yaml"] = dump(self._dev())
        files["overlays/prod/kustomization.yaml"] = dump(self._prod())
        monitors = service_monitors([EDGE, *self._workloads()], without_app=EDGE)
        if self.variants:
            monitors.append(comparator_monitor())
        files["overlays/monitoring/servicemonitors.yaml"] = dump_all(monitors)
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
            rollout_root=Path(ROLLOUT_MOUNT) if self.variants else None,
        )
        out = {"edge.yaml": dump(configs[EDGE])}
        for service, replica in self.first.items():
            config = configs[f"{replica.name}.sidecar"]
            callees = callees_with_variants(self.plan.topology, service)
            if callees:  # the policy from the callees' ConfigMaps, as the kubelet lays it
                config = kubelet_runtime_layers(config, callees)
            out[f"{service}.yaml"] = dump(config)
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
            spec = self.plan.topology.services.get(service)
            stable = spec.variant_replicas(STABLE) if spec else 1
            minimum = max(self.deploy.hpa_min_replicas, stable)
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

    def _callers(self, service: str, variant: str = STABLE) -> list[str]:
        """The workloads whose pods may call ``service`` (every variant of a caller);
        the edge calls stable only."""
        topology = self.plan.topology
        callers = [
            variant_cluster(name, v)
            for name, spec in topology.services.items()
            if service in spec.calls
            for v in spec.variant_names()
        ]
        if service in topology.edge_routes and variant == STABLE:
            callers.insert(0, EDGE)
        return callers

    def _workloads(self) -> list[str]:
        """Every Deployment of a service: one per service and per variant."""
        return [
            variant_cluster(name, variant)
            for name, spec in self.plan.topology.services.items()
            for variant in spec.variant_names()
        ]

    def _replica(self, service: str, variant: str) -> Replica:
        return next(r for r in self.plan.replicas[service] if r.variant == variant)

    def _service_docs(self, service: str, variant: str = STABLE) -> list[Doc]:
        """The Deployment, Service, HPA, PDB and NetworkPolicy of a service, or of one of
        its variants (``classification-candidate``: the variant's env over the service's,
        the service's identity and Envoy config, its own pods and headless Service)."""
        replica = self._replica(service, variant)
        spec = self.plan.topology.services[service]
        name = variant_cluster(service, variant)
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
        if spec.variants:
            env.update(
                variant_env(spec, replica, Path(DATA_DIR), comparator_address(self.settings))
            )
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
        rollout, mounts = rollout_volumes(callees_with_variants(self.plan.topology, service))
        volumes += rollout
        sidecar["volumeMounts"] += mounts
        d = self.deploy
        docs = [
            deployment(d, name, [app, sidecar], volumes, scrape_path="/metrics"),
            pod_service(d, name, replica.sidecar_port, headless=True),
            hpa(d, name, spec.variant_replicas(variant)),
            pdb(name),
            network_policy(
                name, replica.sidecar_port, self._callers(service, variant), scrape=self._scrape()
            ),
        ]
        if spec.variants:
            docs = [label_variant(doc, variant) for doc in docs]
        return docs

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
