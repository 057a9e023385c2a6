"""Secrets given as files reach the services and nothing else: a full local mesh (real
services, the LLM composer against a fake OpenAI-compatible API, the context store on a
password-protected redis-server), a few chats through the authenticated edge, then
every log line of every process, the state directory and `switchboard status` are
searched for the secret values.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard_client import ConnectConfig, OrchestrationClient
from switchboard_server.mesh.security.tokens import DevAuth
from switchboard_server.testing import PortPool, stop_process
from tests.support.context import start_redis
from tests.support.fake_llm import completion, fake_llm
from tests.support.mesh_up import ROOT, mesh_up

pytestmark = pytest.mark.mesh

LLM_REPLY = "the fake LLM says hello"


@pytest.fixture
def redis_password(tmp_path: Path) -> Iterator[tuple[int, str]]:
    port, password = PortPool()(), f"redis-pw-{secrets.token_hex(12)}"
    (tmp_path / "redis").mkdir()
    proc = start_redis(port, tmp_path / "redis", password)
    try:
        yield port, password
    finally:
        stop_process(proc)


def _secret_file(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def _switchboard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_secret_files_are_used_and_never_logged_or_shown(
    tmp_path: Path, redis_password: tuple[int, str]
) -> None:
    port, password = redis_password
    api_key = f"sk-llm-{secrets.token_hex(16)}"
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    mesh_dir = tmp_path / "mesh"
    mesh_dir.mkdir()
    with fake_llm() as (base_url, script):
        script.body = completion(LLM_REPLY)
        env = {
            "SWITCHBOARD_LOG_LEVEL": "debug",
            "SWITCHBOARD_ORCHESTRATION_COMPOSER": "llm",
            "SWITCHBOARD_ORCHESTRATION_LLM_BASE_URL": base_url,
            "SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE": _secret_file(
                secret_dir / "llm-key", api_key
            ),
            "SWITCHBOARD_CONTEXT_STORE": "redis",
            "SWITCHBOARD_CONTEXT_REDIS_URL_FILE": _secret_file(
                secret_dir / "redis-url", f"redis://:{password}@127.0.0.1:{port}/0"
            ),
        }
        with mesh_up(mesh_dir, env, down=True) as mesh:  # its stop logs are searched too
            # the typed client finds the development token `up` wrote, by itself
            config = ConnectConfig.from_env(
                {"SWITCHBOARD_DATA_DIR": str(mesh.data_dir)}, target=mesh.edge
            )
            assert config.token
            assert config.token not in repr(config)
            async with OrchestrationClient(config) as client:
                for i in range(3):
                    reply = await client.chat(f"what is switchboard? {i}", session_id="secrets-1")
                    assert reply.reply == LLM_REPLY
                    assert list(reply.degraded) == []  # the store (with its password) answered
            shown = os.environ | {
                "SWITCHBOARD_DATA_DIR": str(mesh.data_dir),
                "SWITCHBOARD_CONTEXT_REDIS_URL_FILE": env["SWITCHBOARD_CONTEXT_REDIS_URL_FILE"],
                "SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE": env[
                    "SWITCHBOARD_ORCHESTRATION_LLM_API_KEY_FILE"
                ],
            }
            status = [_switchboard(shown, "status"), _switchboard(shown, "status", "--json")]
        # the key reached the LLM API, from the file
        assert script.headers
        assert all(h["Authorization"] == f"Bearer {api_key}" for h in script.headers)

    values = {"llm key": api_key, "redis password": password}
    dev_token = config.token
    for result in status:
        assert result.returncode in (0, 1), result.stderr
        for what, value in values.items():
            assert value not in result.stdout + result.stderr, what
    # every log line of every process (`up --detach` merges them in mesh.log), the
    # state file, the rendered Envoy configs: nothing holds a secret
    searched = [p for p in mesh.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "mesh.log" for p in searched)
    lines = 0
    for path in searched:
        text = path.read_bytes().decode(errors="replace")
        lines += text.count("\n")
        for what, value in values.items():
            assert value not in text, f"{what} in {path}"
        if path.parent != DevAuth.under(mesh.data_dir).directory:
            assert dev_token not in text, f"the development token in {path}"
    assert lines > 100  # the logs were there to search
