"""The mesh CA and workload certificates (`switchboard certs`), without Envoy."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from switchboard_server.mesh.security.certs import (
    CA_CERT,
    DATA_LINK,
    TLS_CERT,
    TLS_KEY,
    CertError,
    CertPolicy,
    CertStore,
    MeshCA,
    cert_uri,
    needs_rotation,
)

ROOT = Path(__file__).parents[2]
POLICY = CertPolicy(
    trust_domain="switchboard.local",
    namespace="switchboard",
    ttl=dt.timedelta(hours=24),
    ca_ttl=dt.timedelta(days=365),
    rotate_fraction=2 / 3,
)
NAMES = ["classification", "edge", "operator"]


def _cert(store: CertStore, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((store.identity_dir(name) / TLS_CERT).read_bytes())


def test_init_issues_spiffe_identities_signed_by_the_mesh_ca(tmp_path: Path) -> None:
    store = CertStore(tmp_path, POLICY)
    assert store.ensure(NAMES) == NAMES
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / CA_CERT).read_bytes())
    for name in NAMES:
        cert = _cert(store, name)
        assert cert_uri(cert) == f"spiffe://switchboard.local/ns/switchboard/sa/{name}"
        cert.verify_directly_issued_by(ca)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert dt.timedelta(hours=24) <= lifetime <= dt.timedelta(hours=24, minutes=2)
        bundle = (store.identity_dir(name) / CA_CERT).read_bytes()
        assert x509.load_pem_x509_certificate(bundle) == ca
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc) > dt.timedelta(days=300)


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    store = CertStore(tmp_path, POLICY)
    store.ensure(NAMES)
    keys = [tmp_path / "ca" / "ca.key"] + [store.identity_dir(n) / TLS_KEY for n in NAMES]
    for key in keys:
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, key


def test_files_are_published_through_one_swapped_link(tmp_path: Path) -> None:
    """The kubelet's layout: tls.* -> ..data/tls.*, ..data -> a versioned directory."""
    store = CertStore(tmp_path, POLICY)
    store.ensure(["edge"])
    directory = store.identity_dir("edge")
    first = (directory / DATA_LINK).resolve()
    assert os.readlink(directory / TLS_CERT) == f"{DATA_LINK}/{TLS_CERT}"
    old_serial = _cert(store, "edge").serial_number
    store.rotate(["edge"])
    assert (directory / DATA_LINK).resolve() != first
    assert not first.exists()  # the old version is gone once the link moved
    assert _cert(store, "edge").serial_number != old_serial
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith("..")) == [
        CA_CERT,
        TLS_CERT,
        TLS_KEY,
    ]


def test_ensure_reissues_only_what_is_missing_or_due(tmp_path: Path) -> None:
    store = CertStore(tmp_path, POLICY)
    store.ensure(NAMES)
    assert store.ensure(NAMES) == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=17)  # past 2/3 of 24 h
    assert store.ensure(NAMES, now=later) == NAMES
    assert store.ensure(["context", *NAMES]) == ["context"]


def test_needs_rotation_at_two_thirds_of_the_lifetime() -> None:
    ca = MeshCA.create(POLICY)
    cert, _ = ca.issue("edge", POLICY)
    start = cert.not_valid_before_utc
    lifetime = cert.not_valid_after_utc - start
    assert not needs_rotation(cert, 2 / 3, start + lifetime * 0.6)
    assert needs_rotation(cert, 2 / 3, start + lifetime * 0.7)


def test_bring_your_own_ca(tmp_path: Path) -> None:
    own = CertStore(tmp_path / "own", POLICY)
    own_ca = own.ca(create=True)
    ca_cert, ca_key = tmp_path / "own" / "ca" / CA_CERT, tmp_path / "own" / "ca" / "ca.key"
    store = CertStore(tmp_path / "mesh", POLICY, ca_cert, ca_key)
    store.ensure(NAMES)
    _cert(store, "edge").verify_directly_issued_by(own_ca.cert)
    assert not (tmp_path / "mesh" / "ca").exists()  # the key stays where you keep it
    # A switch of CA reissues every identity, bundle included.
    switched = CertStore(tmp_path / "mesh", POLICY)
    assert switched.ensure(NAMES) == NAMES


def test_a_ca_that_cannot_sign_is_refused_with_the_reason(tmp_path: Path) -> None:
    store = CertStore(tmp_path / "a", POLICY)
    store.ensure(["edge"])
    leaf = store.identity_dir("edge") / TLS_CERT
    key = store.identity_dir("edge") / TLS_KEY
    with pytest.raises(CertError, match="not a CA certificate"):
        CertStore(tmp_path / "b", POLICY, leaf, key).ensure(["edge"])
    other_key = tmp_path / "a" / "ca" / "ca.key"
    with pytest.raises(CertError, match="does not belong"):
        CertStore(tmp_path / "b", POLICY, tmp_path / "a" / "ca" / CA_CERT, key).ensure(["x"])
    assert other_key.exists()


def test_the_cli_init_show_rotate(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "switchboard_server.mesh", "certs", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert cli("init").returncode == 0
    shown = cli("show")
    assert shown.returncode == 0
    assert "spiffe://switchboard.local/ns/switchboard/sa/operator" in shown.stdout
    before = _cert(CertStore(tmp_path / "mesh" / "certs", POLICY), "orchestration")
    assert cli("rotate").returncode == 0
    after = _cert(CertStore(tmp_path / "mesh" / "certs", POLICY), "orchestration")
    assert after.serial_number != before.serial_number
    sds = tmp_path / "mesh" / "certs" / "sds" / "orchestration.cert.yaml"
    assert str(tmp_path / "mesh" / "certs" / "orchestration" / TLS_KEY) in sds.read_text()
