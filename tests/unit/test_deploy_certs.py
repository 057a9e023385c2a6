"""`switchboard certs init --out DIR`: certificates for Compose, each identity's directory
readable by the Envoy uid of the container that mounts it, the CA key never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from switchboard_server.mesh.security.certs import read_certificate


def test_certs_for_compose_are_readable_in_the_container_and_private_on_the_host(
    tmp_path: Path,
) -> None:
    out = tmp_path / "certs"
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "switchboard_client.cli", "certs", "init", "--out", str(out)]
    subprocess.run(cli, env=env, check=True, timeout=120, capture_output=True)
    assert out.stat().st_mode & 0o777 == 0o700  # the host: its owner only
    for identity in ("edge", "classification", "context", "orchestration"):
        directory = out / identity
        for name in ("tls.crt", "tls.key", "ca.crt"):
            assert (directory / name).resolve().stat().st_mode & 0o777 == 0o644, (identity, name)
        assert (directory / "..data").resolve().stat().st_mode & 0o777 == 0o755
        uri = read_certificate(directory / "tls.crt").extensions
        assert uri is not None
    assert (out / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert not (out / "sds").exists()  # containers read the rendered SDS files
    assert not (tmp_path / "data").exists()  # the local mesh's certificates untouched
