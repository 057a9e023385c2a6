"""Secret settings from files, the development key and tokens, the client's token
discovery, and what the rendered edge carries with and without authentication."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import yaml

from switchboard_client import DEV_TOKEN_RELPATH, ConnectConfig, discover_token
from switchboard_client._config import DEFAULT_DATA_DIR
from switchboard_server.config import ConfigError, CoreSettings, Settings, load_settings
from switchboard_server.mesh.render import render_edge
from switchboard_server.mesh.runner import MeshRunner
from switchboard_server.mesh.security.edge_auth import CLIENT_RATE_LIMIT_FILTER, JWT_FILTER
from switchboard_server.mesh.security.tokens import DevAuth, ensure_keys, mint, prepare_dev_auth
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import load_topology, make_plan

SECRET = "sk-unit-0123456789abcdef"


def test_a_secret_is_read_from_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(SECRET + "\n")
    monkeypatch.setenv("SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE", str(tmp_path / "key"))
    settings = load_settings()
    assert settings.orchestration.llm_api_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.orchestration.model_dump())


def test_redis_url_and_password_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "url").write_text("redis://:pw-in-url@10.0.0.1:6380/2")
    (tmp_path / "pw").write_text("pw-alone\n")
    monkeypatch.setenv("SWITCHBOARD_CONTEXT_REDIS_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("SWITCHBOARD_CONTEXT_REDIS_PASSWORD_FILE", str(tmp_path / "pw"))
    context = load_settings().context
    assert context.redis_url.get_secret_value() == "redis://:pw-in-url@10.0.0.1:6380/2"
    assert context.redis_password.get_secret_value() == "pw-alone"


@pytest.mark.parametrize("how", ["both", "unreadable"])
def test_a_bad_secret_setting_never_echoes_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    (tmp_path / "key").write_text(SECRET)
    if how == "both":
        monkeypatch.setenv("SWITCHBOARD_ORCHESTRATION_LLM_API_KEY", SECRET)
        monkeypatch.setenv("SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE", str(tmp_path / "key"))
    else:
        monkeypatch.setenv("SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"llm_api_key") as err:
        load_settings()
    assert SECRET not in str(err.value)


def test_development_files_are_private_and_the_token_verifies(tmp_path: Path) -> None:
    settings = prepare_dev_auth(MeshSettings(), tmp_path)
    auth = DevAuth.under(tmp_path)
    assert settings.edge_jwks_file == auth.jwks_path.absolute()
    for path in (auth.key_path, auth.jwks_path, auth.token_path):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert auth.directory.stat().st_mode & 0o077 == 0
    token = auth.token_path.read_text()
    jwks = jwt.PyJWKSet.from_dict(json.loads(auth.jwks_path.read_text()))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        jwks[header["kid"]].key,
        algorithms=["ES256"],
        audience=MeshSettings().edge_jwt_audience,
        issuer=MeshSettings().edge_jwt_issuer,
    )
    assert claims["sub"] == "dev"
    assert claims["exp"] - claims["iat"] == MeshSettings().dev_token_ttl_s
    # the key pair is kept across runs (tokens minted before stay valid)
    before = auth.key_path.read_bytes()
    prepare_dev_auth(MeshSettings(), tmp_path)
    assert auth.key_path.read_bytes() == before


def test_insecure_or_own_jwks_mint_nothing(tmp_path: Path) -> None:
    assert prepare_dev_auth(MeshSettings(insecure=True), tmp_path) == MeshSettings(insecure=True)
    own = MeshSettings(edge_jwks_file=tmp_path / "theirs.json")
    assert prepare_dev_auth(own, tmp_path) == own
    assert not DevAuth.under(tmp_path).directory.exists()


def test_mint_signs_with_the_key_id_of_the_jwks(tmp_path: Path) -> None:
    key = ensure_keys(DevAuth.under(tmp_path))
    token = mint(key, subject="svc-a", ttl_s=60, issuer="i", audience="a", now=1000)
    kid = json.loads(DevAuth.under(tmp_path).jwks_path.read_text())["keys"][0]["kid"]
    assert jwt.get_unverified_header(token)["kid"] == kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"iss": "i", "aud": "a", "sub": "svc-a", "iat": 1000, "exp": 1060}


def test_the_client_discovers_its_token(tmp_path: Path) -> None:
    dev = tmp_path / DEV_TOKEN_RELPATH
    dev.parent.mkdir(parents=True)
    dev.write_text("dev-token\n")
    (tmp_path / "other").write_text("from-file\n")
    data = {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    assert discover_token(data) == "dev-token"
    assert discover_token({**data, "SWITCHBOARD_TOKEN_FILE": str(tmp_path / "other")}) == (
        "from-file"
    )
    assert discover_token({**data, "SWITCHBOARD_TOKEN": "explicit"}) == "explicit"
    assert discover_token({"SWITCHBOARD_DATA_DIR": str(tmp_path / "none")}) == ""
    config = ConnectConfig.from_env(data)
    assert config.token == "dev-token"
    assert "dev-token" not in repr(config)
    assert ConnectConfig.from_env(data, token="").token == ""
    # the local development token is not sent to another machine
    assert ConnectConfig.from_env(data, target="edge.example.com:443").token == ""
    assert ConnectConfig.from_env(data, target="localhost:8080").token == "dev-token"
    with pytest.raises(ValueError, match="SWITCHBOARD_TOKEN_FILE"):
        discover_token({"SWITCHBOARD_TOKEN_FILE": str(tmp_path / "missing")})


def test_the_client_default_data_dir_is_the_servers() -> None:
    assert CoreSettings.model_fields["data_dir"].default == DEFAULT_DATA_DIR


def _filters(settings: MeshSettings) -> list[str]:
    plan = make_plan(load_topology(None), settings)
    edge = render_edge(plan, settings)
    hcm = edge["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [f["name"] for f in hcm["typed_config"]["http_filters"]]


def test_the_edge_authenticates_only_with_keys_and_not_insecure(tmp_path: Path) -> None:
    jwks = MeshSettings(edge_jwks_file=tmp_path / "jwks.json")
    names = _filters(jwks)
    assert names.index(JWT_FILTER) < names.index(CLIENT_RATE_LIMIT_FILTER)
    assert names.index(CLIENT_RATE_LIMIT_FILTER) < names.index(
        "envoy.filters.http.grpc_json_transcoder"
    )
    assert JWT_FILTER not in _filters(MeshSettings())
    insecure = MeshSettings(edge_jwks_file=tmp_path / "jwks.json", insecure=True)
    assert JWT_FILTER not in _filters(insecure)
    no_limit = MeshSettings(edge_jwks_file=tmp_path / "j.json", edge_client_rate_limit_rps=0)
    assert CLIENT_RATE_LIMIT_FILTER not in _filters(no_limit)


def test_a_remote_jwks_gets_a_cluster_and_tls_a_transport_socket(tmp_path: Path) -> None:
    settings = MeshSettings(
        edge_jwks_url="https://idp.example.com/.well-known/jwks.json",
        edge_tls_cert_file=tmp_path / "edge.pem",
        edge_tls_key_file=tmp_path / "edge.key",
    )
    edge = render_edge(make_plan(load_topology(None), settings), settings)
    clusters = {c["name"]: c for c in edge["static_resources"]["clusters"]}
    address = clusters["edge_jwks"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"]["socket_address"] == {
        "address": "idp.example.com",
        "port_value": 443,
    }
    chain = edge["static_resources"]["listeners"][0]["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"


def _edge_filters_built(settings: Settings) -> list[str]:
    runner = MeshRunner(settings, make_plan(load_topology(None), settings.mesh), out=io.StringIO())
    runner.build()
    edge = yaml.safe_load((runner.dir / "envoy" / "edge.yaml").read_text())
    hcm = edge["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [f["name"] for f in hcm["typed_config"]["http_filters"]]


def test_up_authenticates_with_a_development_token_unless_insecure(tmp_path: Path) -> None:
    secure = Settings(core=CoreSettings(data_dir=tmp_path / "secure"))
    assert JWT_FILTER in _edge_filters_built(secure)
    assert (tmp_path / "secure" / DEV_TOKEN_RELPATH).exists()
    insecure = Settings(
        core=CoreSettings(data_dir=tmp_path / "insecure"), mesh=MeshSettings(insecure=True)
    )
    assert JWT_FILTER not in _edge_filters_built(insecure)
    assert not (tmp_path / "insecure" / DEV_TOKEN_RELPATH).exists()


def test_token_mint_prints_a_token_for_the_subject(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path)}
    mint_ci = ["token", "mint", "--subject", "ci", "--ttl", "2h"]
    minted = subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", *mint_ci],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = minted.stdout.strip()
    jwks = jwt.PyJWKSet.from_dict(json.loads(DevAuth.under(tmp_path).jwks_path.read_text()))
    claims = jwt.decode(
        token,
        jwks[jwt.get_unverified_header(token)["kid"]].key,
        algorithms=["ES256"],
        audience="switchboard",
        issuer="switchboard-dev",
    )
    assert claims["sub"] == "ci"
    assert claims["exp"] - claims["iat"] == 7200


def test_token_init_writes_a_private_key_and_a_public_jwks_a_minted_token_verifies_against(
    tmp_path: Path,
) -> None:
    auth = tmp_path / "auth"
    cli = [sys.executable, "-m", "switchboard_client.cli", "token"]
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([*cli, "init", "--out", str(auth)], env=env, check=True, timeout=60)
    key, jwks_file = auth / "dev-signing-key.pem", auth / "jwks" / "jwks.json"
    assert key.stat().st_mode & 0o777 == 0o600
    # The edge's Envoy reads the JWKS under its own uid: public, and alone in its dir.
    assert jwks_file.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in jwks_file.parent.iterdir()) == ["jwks.json"]
    before = key.read_bytes()
    subprocess.run([*cli, "init", "--out", str(auth)], env=env, check=True, timeout=60)
    assert key.read_bytes() == before  # kept: tokens minted before stay valid
    minted = subprocess.run(
        [*cli, "mint", "--subject", "ops", "--key", str(key)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = minted.stdout.strip()
    jwks = jwt.PyJWKSet.from_dict(json.loads(jwks_file.read_text()))
    claims = jwt.decode(
        token,
        jwks[jwt.get_unverified_header(token)["kid"]].key,
        algorithms=["ES256"],
        audience=MeshSettings().edge_jwt_audience,
        issuer=MeshSettings().edge_jwt_issuer,
    )
    assert claims["sub"] == "ops"
    assert not (tmp_path / "data").exists()  # the mesh's own development key untouched
