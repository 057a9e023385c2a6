"""The bounded subset of ``make chaos`` (issue 22, point 7): the real mesh with two
replicas of each service (context on a real redis-server, orchestration's conversation
log on another), Chats at a fixed rate, a context replica killed (SIGKILL), an
orchestration replica killed, each context replica stopped (SIGTERM) in turn, and
Redis restarted; after each, every acknowledged turn is in its session exactly once
and no failed turn is, unless its key answers with the committed turn. Killing an
orchestration replica fails no turn: every Chat carries its key, so the edge resends
the ones cut off to the other replica."""

from __future__ import annotations

import pytest

from scripts.chaos import scenarios
from scripts.chaos.mesh import chaos_mesh
from scripts.chaos.runner import run_scenario, settle

pytestmark = [pytest.mark.chaos, pytest.mark.mesh, pytest.mark.redis, pytest.mark.timeout(300)]

RATE = 40.0
DURATION_S = 10.0
BEFORE_S = 3.0


async def test_kills_restarts_and_a_redis_restart_lose_and_double_no_turn(tmp_path):
    with chaos_mesh(tmp_path) as mesh:
        for scenario in scenarios.quick(DURATION_S):
            await settle(mesh, 2.0)
            result = await run_scenario(
                mesh, scenario, rate=RATE, before_s=BEFORE_S, sessions=20, timeout_s=5.0
            )
            name = scenario.name
            assert result["error"] == "", (name, result["error"])
            assert result["sent"] == RATE * scenario.duration_s, name
            # the load really ran and was answered, so the audit had turns to find
            assert result["acknowledged"] >= 0.9 * result["sent"], (name, result["codes"])
            assert result["lost"] == 0, (name, result)
            assert result["doubled"] == 0, (name, result)
            assert result["misplaced"] == 0, (name, result)
            assert result["failed_committed_unresolved"] == 0, (name, result)
            if name == "kill9-orchestration":
                assert result["failed"] == 0, (name, result["codes"], result.get("steps"))
