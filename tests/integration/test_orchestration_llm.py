"""The LLM composer in a real orchestration server: the caller's deadline bounds it and
its circuit breaker shows in the metrics (fake OpenAI-compatible API on loopback)."""

from __future__ import annotations

import time
from pathlib import Path

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import ConnectConfig, OrchestrationClient
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.testing import start_services, with_parts
from tests.support.fake_llm import completion, fake_llm


async def test_a_slow_llm_degrades_the_turn_within_the_callers_deadline(
    tmp_path: Path, model_cache: Path
) -> None:
    with fake_llm() as (url, script):
        script.body, script.delay = completion("far too late"), 4.0
        settings = with_parts(
            Settings(core=CoreSettings(data_dir=tmp_path, grace_period_s=0.0)),
            orchestration={"composer": "llm", "llm_base_url": url, "llm_breaker_failures": 2},
        )
        async with start_services(tmp_path, settings=settings, model_cache=model_cache) as running:
            target = running.target(ServiceName.ORCHESTRATION)
            async with OrchestrationClient(ConnectConfig(target)) as client:
                begun = time.monotonic()
                response = await client.chat(
                    "set an alarm for 6 am", session_id="llm-1", timeout_s=1.0
                )
                took = time.monotonic() - begun
                history = await client.get_conversation("llm-1")
            metrics = running.servers[ServiceName.ORCHESTRATION].runtime.metrics
            closed = metrics.get_sample_value(
                "switchboard_circuit_breaker_state", {"breaker": "llm", "state": "closed"}
            )
    assert [(d.dependency, d.reason) for d in response.degraded] == [
        (pb.DEPENDENCY_COMPOSER, "DEADLINE_EXCEEDED")
    ]
    assert response.reply
    assert "too late" not in response.reply
    assert took < 1.0
    assert len(script.requests) == 1
    assert history.total_turns == 1
    assert closed == 1.0
