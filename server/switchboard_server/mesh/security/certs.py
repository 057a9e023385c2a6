"""Mesh certificates: a CA and one short-lived certificate per workload identity.

Every workload (each service, the ``edge`` and the ``operator`` the CLI uses) gets an
EC P-256 key and a certificate whose URI SAN is its SPIFFE id
``spiffe://<trust domain>/ns/<namespace>/sa/<name>`` (as Istio names workloads), plus
DNS SANs ``<name>`` and ``<name>.<namespace>.svc`` for clients that check host names.

Each identity's directory has the layout of a ``kubernetes.io/tls`` Secret volume
(``tls.crt``, ``tls.key``, ``ca.crt``, which cert-manager fills too), written the way
the kubelet writes one: the files go into a fresh ``..<timestamp>`` directory, then the
``..data`` symlink is swapped to it with one rename. Envoy watches the directory for
moves (SDS ``watched_directory``), so it reads a rotated key and certificate together,
never a new certificate with the old key, and needs no restart.

The CA's key stays in ``<root>/ca`` (0600), or where the operator keeps their own CA
(bring your own: :meth:`CertStore.use_ca`); it never enters an identity's directory.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_CERT = "ca.crt"
DATA_LINK = "..data"
CA_DIR = "ca"
CA_KEY = "ca.key"
OPERATOR = "operator"
EDGE = "edge"
_FILES = (TLS_CERT, TLS_KEY, CA_CERT)


class CertError(ValueError):
    """A certificate or CA that cannot be used; the message says which and why."""


def spiffe_id(trust_domain: str, namespace: str, name: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{name}"


@dataclass(frozen=True)
class CertPolicy:
    """Names and lifetimes of the mesh's certificates (from :class:`MeshSettings`)."""

    trust_domain: str
    namespace: str
    ttl: dt.timedelta
    ca_ttl: dt.timedelta
    rotate_fraction: float  # rotate once this share of a certificate's lifetime has passed


@dataclass(frozen=True)
class CertInfo:
    """What ``switchboard certs show`` prints for one certificate."""

    name: str
    spiffe_id: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertError(f"{path}: not a readable PEM certificate ({exc})") from None


def cert_uri(cert: x509.Certificate) -> str:
    """The certificate's first URI SAN (its SPIFFE id), or ''."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else ""


def needs_rotation(cert: x509.Certificate, fraction: float, now: dt.datetime) -> bool:
    """Whether ``fraction`` of the certificate's lifetime has passed at ``now``."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * fraction


@dataclass(frozen=True)
class MeshCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, policy: CertPolicy) -> MeshCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{policy.trust_domain} mesh CA"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + policy.ca_ttl)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> MeshCA:
        cert = read_certificate(cert_path)
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise CertError(f"{key_path}: not a readable unencrypted PEM key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{key_path}: the CA key must be an EC key")
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise CertError(f"{key_path}: the key does not belong to {cert_path}")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise CertError(f"{cert_path}: not a CA certificate (no basicConstraints)") from None
        if not constraints.ca:
            raise CertError(f"{cert_path}: not a CA certificate (basicConstraints CA:FALSE)")
        return cls(cert, key)

    def issue(
        self, name: str, policy: CertPolicy
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A workload certificate for ``name``, valid for ``policy.ttl`` (never past the CA)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + policy.ttl, self.cert.not_valid_after_utc)
        uri = spiffe_id(policy.trust_domain, policy.namespace, name)
        san = x509.SubjectAlternativeName(
            [
                x509.UniformResourceIdentifier(uri),
                x509.DNSName(name),
                x509.DNSName(f"{name}.{policy.namespace}.svc"),
            ]
        )
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(not_after)
            .add_extension(san, critical=True)  # the subject is empty: SAN critical (RFC 5280)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def write_identity(
    directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> None:
    """Publish a key, certificate and CA bundle atomically (the kubelet's way)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = _now().strftime("%Y_%m_%d_%H_%M_%S")
    version = directory / f"..{stamp}.{secrets.token_hex(4)}"
    version.mkdir(mode=0o700)
    _write_private(version / TLS_KEY, _key_pem(key))
    (version / TLS_CERT).write_bytes(_cert_pem(cert))
    (version / CA_CERT).write_bytes(_cert_pem(ca))
    link = directory / DATA_LINK
    old = link.resolve() if link.is_symlink() else None
    tmp = directory / f"{DATA_LINK}_tmp.{secrets.token_hex(4)}"  # writers never share it
    tmp.symlink_to(version.name)
    os.replace(tmp, link)  # the one atomic step a reader (Envoy) sees
    for name in _FILES:
        path = directory / name
        if not path.is_symlink():
            path.unlink(missing_ok=True)
            path.symlink_to(f"{DATA_LINK}/{name}")
    if old is not None and old != version.resolve() and old.parent == directory.resolve():
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class CertStore:
    """The certificates of one mesh under ``root`` (one directory per identity)."""

    root: Path
    policy: CertPolicy
    ca_cert_file: Path | None = None  # bring your own CA: its certificate ...
    ca_key_file: Path | None = None  # ... and key, read where the operator keeps them

    def identity_dir(self, name: str) -> Path:
        return self.root / name

    def spiffe_id(self, name: str) -> str:
        return spiffe_id(self.policy.trust_domain, self.policy.namespace, name)

    def _ca_paths(self) -> tuple[Path, Path]:
        if self.ca_cert_file is not None and self.ca_key_file is not None:
            return self.ca_cert_file, self.ca_key_file
        return self.root / CA_DIR / CA_CERT, self.root / CA_DIR / CA_KEY

    def ca(self, *, create: bool) -> MeshCA:
        cert_path, key_path = self._ca_paths()
        if cert_path.exists() or self.ca_cert_file is not None:
            return MeshCA.load(cert_path, key_path)
        if not create:
            raise CertError(f"no mesh CA at {cert_path}; run `switchboard certs init`")
        ca = MeshCA.create(self.policy)
        cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic_write(key_path, _key_pem(ca.key), 0o600)
        _atomic_write(cert_path, _cert_pem(ca.cert), 0o644)
        return ca

    def current(self, name: str) -> x509.Certificate | None:
        path = self.identity_dir(name) / TLS_CERT
        return read_certificate(path) if path.exists() else None

    def _stale(self, name: str, ca: MeshCA, now: dt.datetime) -> bool:
        cert = self.current(name)
        if cert is None or cert.issuer != ca.cert.subject:
            return True
        if cert_uri(cert) != self.spiffe_id(name):
            return True
        bundle = read_certificate(self.identity_dir(name) / CA_CERT)
        if bundle != ca.cert:
            return True
        return needs_rotation(cert, self.policy.rotate_fraction, now)

    def ensure(self, names: Iterable[str], *, now: dt.datetime | None = None) -> list[str]:
        """Create the CA when missing, and a certificate for each identity that has none,
        one from another CA or one past the rotation point; the names it (re)issued."""
        ca = self.ca(create=True)
        moment = now or _now()
        issued = []
        for name in names:
            if self._stale(name, ca, moment):
                self._issue(ca, name)
                issued.append(name)
        return issued

    def rotate(self, names: Iterable[str]) -> list[str]:
        """Fresh keys and certificates for every identity."""
        ca = self.ca(create=True)
        names = list(names)
        for name in names:
            self._issue(ca, name)
        return names

    def _issue(self, ca: MeshCA, name: str) -> None:
        cert, key = ca.issue(name, self.policy)
        write_identity(self.identity_dir(name), cert, key, ca.cert)

    def show(self, names: Iterable[str]) -> list[CertInfo]:
        rows = []
        ca = self.ca(create=False)
        rows.append(_info("ca", ca.cert))
        for name in names:
            cert = self.current(name)
            if cert is not None:
                rows.append(_info(name, cert))
        return rows


def _info(name: str, cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        name=name,
        spiffe_id=cert_uri(cert),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
    )
