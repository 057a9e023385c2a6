"""Client tokens for the edge: the local development key pair, its JWKS, and minting.

``switchboard up`` (unless ``--insecure`` or a JWKS of your own is configured) keeps an
EC P-256 key pair under ``<data_dir>/mesh/auth/``, writes its public half as a JWKS for
the edge and mints a development token (subject ``dev``) that the CLI, the typed
client (``ConnectConfig.from_env``) and the chat page use. Every file there is 0600.
``switchboard token mint`` signs more tokens with the same key, for other clients.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.utils import base64url_encode

from switchboard_client import DEV_TOKEN_RELPATH
from switchboard_server.mesh.settings import MeshSettings

ALGORITHM = "ES256"
DEV_SUBJECT = "dev"
KEY_FILE = "dev-signing-key.pem"
JWKS_FILE = "jwks.json"


@dataclass(frozen=True)
class DevAuth:
    """Where the development key pair, its JWKS and the development token live."""

    directory: Path

    @classmethod
    def under(cls, data_dir: Path) -> DevAuth:
        return cls((data_dir / DEV_TOKEN_RELPATH).parent)

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def jwks_path(self) -> Path:
        return self.directory / JWKS_FILE

    @property
    def token_path(self) -> Path:
        return self.directory / DEV_TOKEN_RELPATH.name


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``path`` readable by its owner only (0600 from the first byte), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _kid(jwk: dict[str, str]) -> str:
    """The RFC 7638 thumbprint of an EC public JWK (base64url SHA-256)."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64url_encode(sha256(canonical.encode()).digest()).decode()


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def public_jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, list[dict[str, str]]]:
    jwk: dict[str, str] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": _kid(jwk), "alg": ALGORITHM, "use": "sig"})
    return {"keys": [jwk]}


def ensure_keys(auth: DevAuth) -> ec.EllipticCurvePrivateKey:
    """The development key pair (created on first use) and its JWKS, both on disk."""
    if auth.key_path.exists():
        key = load_key(auth.key_path)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(auth.key_path, pem)
    write_private(auth.jwks_path, json.dumps(public_jwks(key), indent=2))
    return key


PUBLIC_JWKS_DIR = "jwks"


def init_deploy_keys(directory: Path) -> tuple[Path, Path]:
    """A signing key pair for a container deployment's edge (created once, kept after):
    ``<directory>/dev-signing-key.pem`` (0600, stays with whoever mints tokens) and its
    JWKS ``<directory>/jwks/jwks.json`` (0644: public, and read by the edge's Envoy under
    another uid), the directory that Compose mounts and a Kubernetes Secret carries."""
    auth = DevAuth(directory)
    key = ensure_keys(auth)
    jwks = directory / PUBLIC_JWKS_DIR / JWKS_FILE
    jwks.parent.mkdir(parents=True, exist_ok=True)
    jwks.parent.chmod(0o755)
    tmp = jwks.with_name(f".{jwks.name}.tmp")
    tmp.write_text(json.dumps(public_jwks(key), indent=2))
    tmp.chmod(0o644)
    os.replace(tmp, jwks)
    auth.jwks_path.unlink(missing_ok=True)  # the private copy ensure_keys wrote
    return auth.key_path, jwks


def mint(
    key: ec.EllipticCurvePrivateKey,
    *,
    subject: str,
    ttl_s: int,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> str:
    """A signed token for ``subject``, valid ``ttl_s`` seconds from ``now``."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": issued}
    claims["exp"] = issued + ttl_s
    kid = public_jwks(key)["keys"][0]["kid"]
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def prepare_dev_auth(settings: MeshSettings, data_dir: Path) -> MeshSettings:
    """The mesh settings to render with: unchanged when insecure or given a JWKS of
    their own; otherwise pointing at the development JWKS, after minting the token."""
    if settings.insecure or settings.edge_auth:
        return settings
    auth = DevAuth.under(data_dir)
    key = ensure_keys(auth)
    token = mint(
        key,
        subject=DEV_SUBJECT,
        ttl_s=settings.dev_token_ttl_s,
        issuer=settings.edge_jwt_issuer,
        audience=settings.edge_jwt_audience,
    )
    write_private(auth.token_path, token)
    # absolute: Envoy reads it whatever its working directory
    return settings.model_copy(update={"edge_jwks_file": auth.jwks_path.absolute()})
