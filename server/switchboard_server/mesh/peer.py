"""Calling a sidecar's public port as a mesh identity (the operator, in tests any).

With mTLS on, a sidecar's public port takes only TLS 1.3 connections with a client
certificate from the mesh CA; these are the gRPC channel credentials for one identity's
directory (``tls.crt``, ``tls.key``, ``ca.crt``) and the channel options that check the
sidecar's certificate names the expected service (its DNS SAN ``<service>``).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from switchboard_server.mesh.security.certs import CA_CERT, TLS_CERT, TLS_KEY

ChannelOptions = list[tuple[str, str]]


def identity_credentials(identity_dir: Path) -> grpc.ChannelCredentials:
    """Credentials that present the identity in ``identity_dir`` and trust its CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=(identity_dir / CA_CERT).read_bytes(),
        private_key=(identity_dir / TLS_KEY).read_bytes(),
        certificate_chain=(identity_dir / TLS_CERT).read_bytes(),
    )


def server_name_options(service: str) -> ChannelOptions:
    """Check the server's certificate against ``service`` (a DNS SAN of every workload
    certificate), whatever address the channel dials."""
    return [("grpc.ssl_target_name_override", service)]


def secure_channel(target: str, identity_dir: Path, service: str) -> grpc.aio.Channel:
    """An asyncio channel to a sidecar of ``service`` as the identity in ``identity_dir``."""
    return grpc.aio.secure_channel(
        target, identity_credentials(identity_dir), options=server_name_options(service)
    )
