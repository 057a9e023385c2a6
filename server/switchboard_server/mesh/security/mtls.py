"""Mutual TLS and RBAC of the sidecar-to-sidecar hops, rendered from the topology.

* Every sidecar ingress requires a client certificate from the mesh CA whose URI SAN is
  a SPIFFE id of the trust domain (TLS 1.3 only); its RBAC filter then admits, per
  method, only the callers the topology names (a service's ``calls``, and the edge for
  the services it routes), admin methods only from the ``operator`` identity, and
  health checks and reflection from any mesh identity (Istio's split: the handshake
  authenticates, the authorization policy decides).
* Every caller's cluster (the edge's, an egress listener's) presents its own identity
  and accepts only the callee's SPIFFE id, health checks included (they use the
  cluster's transport socket).
* Certificates reach Envoy through SDS from files (:func:`sds_documents`): the secrets
  name ``tls.crt``/``tls.key``/``ca.crt`` in each identity's directory and watch it, so
  a rotation (:mod:`.certs`) is picked up without a restart.

A refusal is ``PERMISSION_DENIED`` with a ``google.rpc.Status`` carrying an
``ErrorInfo`` (reason ``OPERATOR_IDENTITY_REQUIRED`` on an admin method,
``CALLER_NOT_ALLOWED`` otherwise): Envoy answers a gRPC request's RBAC denial (HTTP 403)
with grpc-status 7, and the local-reply mappers here add the details.

The certificate root is a parameter (:class:`MeshTls`): a local directory, or where a
deployment mounts its Secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from switchboard_server.errors import ERROR_DOMAIN, ErrorReason
from switchboard_server.mesh.envoy_config import Config, typed
from switchboard_server.mesh.routes import HEALTH_SERVICE
from switchboard_server.mesh.security.certs import (
    CA_CERT,
    EDGE,
    OPERATOR,
    TLS_CERT,
    TLS_KEY,
    CertPolicy,
    CertStore,
    spiffe_id,
)
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, ServiceSpec, Topology, variant_cluster

SECRET_TYPE = "envoy.extensions.transport_sockets.tls.v3.Secret"
SDS_DIR = "sds"
PERMISSION_DENIED = 7
REFLECTION_PREFIX = "/grpc.reflection."
REASON_OPERATOR = ErrorReason.OPERATOR_IDENTITY_REQUIRED.value
REASON_CALLER = ErrorReason.CALLER_NOT_ALLOWED.value
MESSAGE_OPERATOR = "this method needs the operator identity"
MESSAGE_CALLER = "this caller may not call this method"
STATUS_DETAILS_HEADER = "grpc-status-details-bin"


def identities(topology: Topology) -> list[str]:
    """Every identity of the mesh: the services, the edge and the operator."""
    return [*topology.services, EDGE, OPERATOR]


def callers(topology: Topology, service: str) -> list[str]:
    """Who may call ``service``: the services whose ``calls`` name it, and the edge when
    it routes to it."""
    names = [s.name for s in topology.services.values() if service in s.calls]
    if service in topology.edge_routes:
        names.append(EDGE)
    return names


@dataclass(frozen=True)
class MeshTls:
    """Where the mesh's certificates are, and how identities are named."""

    certs_dir: Path
    trust_domain: str
    namespace: str
    # Where the SDS files are: <certs_dir>/sds locally; a container target renders them
    # beside the Envoy config (its ConfigMap), the certificates being mounted Secrets.
    sds_dir: Path | None = None

    def spiffe_id(self, name: str) -> str:
        return spiffe_id(self.trust_domain, self.namespace, name)

    def sds_path(self, identity: str, kind: str) -> Path:
        directory = self.sds_dir if self.sds_dir is not None else self.certs_dir / SDS_DIR
        return directory / f"{identity}.{kind}.yaml"


def _secret_name(identity: str, kind: str) -> str:
    return f"{identity}_{kind}"


def sds_documents(tls: MeshTls, identity: str) -> dict[Path, Config]:
    """The SDS files of one identity: its certificate and key, and the CA bundle."""
    directory = tls.certs_dir / identity
    watched = {"path": str(directory)}
    cert = typed(
        SECRET_TYPE,
        name=_secret_name(identity, "cert"),
        tls_certificate={
            "certificate_chain": {"filename": str(directory / TLS_CERT)},
            "private_key": {"filename": str(directory / TLS_KEY)},
            "watched_directory": watched,
        },
    )
    ca = typed(
        SECRET_TYPE,
        name=_secret_name(identity, "ca"),
        validation_context={
            "trusted_ca": {"filename": str(directory / CA_CERT)},
            "watched_directory": watched,
        },
    )
    return {
        tls.sds_path(identity, "cert"): {"resources": [cert]},
        tls.sds_path(identity, "ca"): {"resources": [ca]},
    }


def _sds(tls: MeshTls, identity: str, kind: str) -> Config:
    return {
        "name": _secret_name(identity, kind),
        "sds_config": {
            "path_config_source": {
                "path": str(tls.sds_path(identity, kind)),
                "watched_directory": {"path": str(tls.sds_path(identity, kind).parent)},
            },
            "resource_api_version": "V3",
        },
    }


def _common(tls: MeshTls, identity: str, peer_san: Config) -> Config:
    return {
        # Envoy clients default to a TLS 1.2 maximum: both ends set 1.3 explicitly.
        "tls_params": {
            "tls_minimum_protocol_version": "TLSv1_3",
            "tls_maximum_protocol_version": "TLSv1_3",
        },
        "alpn_protocols": ["h2"],
        "tls_certificate_sds_secret_configs": [_sds(tls, identity, "cert")],
        "combined_validation_context": {
            "default_validation_context": {
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": peer_san}]
            },
            "validation_context_sds_secret_config": _sds(tls, identity, "ca"),
        },
    }


def downstream_tls(tls: MeshTls, identity: str) -> Config:
    """A sidecar ingress: its own certificate; any mesh identity's client certificate."""
    mesh = {"prefix": f"spiffe://{tls.trust_domain}/"}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": typed(
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            require_client_certificate=True,
            common_tls_context=_common(tls, identity, mesh),
        ),
    }


def upstream_tls(tls: MeshTls, identity: str, peer: str) -> Config:
    """A caller's cluster: presents ``identity``, accepts only ``peer``'s SPIFFE id."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": typed(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            sni=peer,
            common_tls_context=_common(tls, identity, {"exact": tls.spiffe_id(peer)}),
        ),
    }


def _path_exact(path: str) -> Config:
    return {"url_path": {"path": {"exact": path}}}


def _path_prefix(prefix: str) -> Config:
    return {"url_path": {"path": {"prefix": prefix}}}


def _principal(tls: MeshTls, name: str) -> Config:
    return {"authenticated": {"principal_name": {"exact": tls.spiffe_id(name)}}}


def rbac_filter(topology: Topology, spec: ServiceSpec, tls: MeshTls) -> Config:
    """Envoy's RBAC filter for ``spec``'s ingress (stats ``http.ingress.rbac.*``)."""
    prefix = f"/{spec.grpc_service}/"
    admin = [_path_exact(f"{prefix}{m}") for m in spec.admin_methods]
    caller_methods: Config = _path_prefix(prefix)
    if admin:
        caller_methods = {
            "and_rules": {"rules": [caller_methods, {"not_rule": {"or_rules": {"rules": admin}}}]}
        }
    ops = [_path_prefix(f"/{HEALTH_SERVICE}/"), _path_prefix(REFLECTION_PREFIX)]
    mesh_member = {"authenticated": {"principal_name": {"prefix": f"spiffe://{tls.trust_domain}/"}}}
    policies: Config = {
        "operator": {
            "permissions": [{"any": True}],
            "principals": [_principal(tls, OPERATOR)],
        },
        "mesh_ops": {"permissions": ops, "principals": [mesh_member]},
    }
    allowed = callers(topology, spec.name)
    if allowed:
        policies["callers"] = {
            "permissions": [caller_methods],
            "principals": [_principal(tls, name) for name in allowed],
        }
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": typed(
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            rules={"action": "ALLOW", "policies": policies},
        ),
    }


def status_details(reason: str, message: str, service: str) -> str:
    """``grpc-status-details-bin``: a base64 ``google.rpc.Status`` with one ErrorInfo."""
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain=ERROR_DOMAIN, metadata={"service": service}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=PERMISSION_DENIED, message=message, details=[detail])
    return base64.b64encode(status.SerializeToString()).decode("ascii")


def _mapper(filters: list[Config], reason: str, message: str, service: str) -> Config:
    denied = {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": 403, "runtime_key": "mesh_rbac.local_reply_403"},
            }
        }
    }
    return {
        "filter": {"and_filter": {"filters": [denied, *filters]}} if filters else denied,
        "headers_to_add": [
            {
                "header": {
                    "key": STATUS_DETAILS_HEADER,
                    "value": status_details(reason, message, service),
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        # For a gRPC request the local reply's body is its grpc-message; it must say
        # what the Status in the details says.
        "body": {"inline_string": message},
    }


def denied_reply_mappers(spec: ServiceSpec) -> list[Config]:
    """Local-reply mappers of an ingress: an RBAC denial (the only 403 an ingress
    answers itself) gets its ErrorInfo, by whether the method is an admin method."""
    mappers = []
    if spec.admin_methods:
        names = "|".join(re.escape(m) for m in spec.admin_methods)
        admin_path = {
            "header_filter": {
                "header": {
                    "name": ":path",
                    "string_match": {
                        "safe_regex": {"regex": f"^/{re.escape(spec.grpc_service)}/({names})$"}
                    },
                }
            }
        }
        mappers.append(_mapper([admin_path], REASON_OPERATOR, MESSAGE_OPERATOR, spec.name))
    mappers.append(_mapper([], REASON_CALLER, MESSAGE_CALLER, spec.name))
    return mappers


def all_sds_documents(plan: Plan, tls: MeshTls) -> dict[Path, Config]:
    """The SDS files every Envoy of the plan reads."""
    documents: dict[Path, Config] = {}
    for name in identities(plan.topology):
        documents |= sds_documents(tls, name)
    return documents


def _hcm(listener: Config) -> Config:
    hcm: Config = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def secure_sidecar(config: Config, plan: Plan, service: str, tls: MeshTls) -> Config:
    """A rendered sidecar with mTLS and RBAC: its ingress requires a mesh client
    certificate and authorizes per method; its clusters to other services present
    ``service``'s identity and check the callee's."""
    spec = plan.topology.services[service]
    resources = config["static_resources"]
    for listener in resources["listeners"]:
        if listener["name"] != "ingress":
            continue  # egress listeners stay plaintext on loopback, for the local app
        listener["filter_chains"][0]["transport_socket"] = downstream_tls(tls, service)
        hcm = _hcm(listener)
        hcm["http_filters"].insert(0, rbac_filter(plan.topology, spec, tls))
        replies = hcm.setdefault("local_reply_config", {"mappers": []})
        replies["mappers"] = [*denied_reply_mappers(spec), *replies.get("mappers", [])]
    _secure_clusters(resources["clusters"], plan, service, tls)
    return config


def secure_edge(config: Config, plan: Plan, tls: MeshTls) -> Config:
    """The rendered edge with mTLS to every service it routes (its own listener stays
    as the edge renders it)."""
    _secure_clusters(config["static_resources"]["clusters"], plan, EDGE, tls)
    return config


def _secure_clusters(clusters: list[Config], plan: Plan, identity: str, tls: MeshTls) -> None:
    # every variant's cluster (``classification-candidate``) is its service's identity
    peers = {
        variant_cluster(name, variant): name
        for name, spec in plan.topology.services.items()
        for variant in spec.variant_names()
    }
    for cluster in clusters:
        if cluster["name"] in peers:
            cluster["transport_socket"] = upstream_tls(tls, identity, peers[cluster["name"]])


def secure_all(configs: dict[str, Config], plan: Plan, tls: MeshTls) -> dict[str, Config]:
    """Every config of :func:`render.render_all` with mTLS and RBAC applied."""
    for replica in plan.all_replicas():
        name = f"{replica.name}.sidecar"
        configs[name] = secure_sidecar(configs[name], plan, replica.service, tls)
        configs[name].setdefault("node", {"id": name, "cluster": replica.service})
    configs["edge"] = secure_edge(configs["edge"], plan, tls)
    configs["edge"].setdefault("node", {"id": "edge", "cluster": EDGE})  # SDS needs a node
    return configs


def write_sds(documents: dict[Path, Config]) -> None:
    """Write SDS files atomically (Envoy watches their directory for moves)."""
    for path, document in documents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(document, sort_keys=False))
        os.replace(tmp, path)


def cert_store(settings: MeshSettings, certs_dir: Path) -> CertStore:
    """The mesh's certificates as the settings describe them."""
    policy = CertPolicy(
        trust_domain=settings.trust_domain,
        namespace=settings.namespace,
        ttl=dt.timedelta(hours=settings.cert_ttl_h),
        ca_ttl=dt.timedelta(days=settings.ca_ttl_days),
        rotate_fraction=settings.cert_rotate_fraction,
    )
    return CertStore(certs_dir, policy, settings.ca_cert_file, settings.ca_key_file)


def prepare(plan: Plan, settings: MeshSettings, certs_dir: Path) -> MeshTls:
    """Certificates for every identity of the plan (created when missing or due), and
    the SDS files that point Envoy at them; the :class:`MeshTls` to render with."""
    cert_store(settings, certs_dir).ensure(identities(plan.topology))
    tls = MeshTls(certs_dir, settings.trust_domain, settings.namespace)
    write_sds(all_sds_documents(plan, tls))
    return tls
