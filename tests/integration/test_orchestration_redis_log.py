"""The conversation log on Redis (several orchestration replicas share it), on a real
redis-server: turns durable and gapless per session whichever replica writes them, a
request_id recorded with its turn in one script, duplicates written once (also when
two servers race), a reused key refused, recorded answers expiring with the retention.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.app import create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.errors import AlreadyExists, ErrorReason, Unavailable
from switchboard_server.idempotency import RequestKey
from switchboard_server.orchestration.ports import DependencyFailed, TurnAlreadyRecorded
from switchboard_server.orchestration.settings import OrchestrationSettings
from switchboard_server.orchestration.store.redis_log import RedisConversationLog
from switchboard_server.orchestration.values import Intent, Turn
from switchboard_server.testing import free_port, start_services, stop_process
from tests.support.context import RedisServer, start_redis

pytestmark = pytest.mark.redis


def turn(text: str) -> Turn:
    return Turn(-1, text, f"reply to {text}", Intent("alarm/set", 0.75, l1="alarm"),
                datetime.now(UTC), "corr")  # fmt: skip


def key(request_hash: str = "h1") -> RequestKey:
    return RequestKey(str(uuid.uuid4()), request_hash)


def answer(index: int) -> str:
    return f'{{"turn_index": {index}}}'


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def open_log(redis_server: RedisServer, prefix: str) -> AsyncIterator[Any]:
    """``open_log(**kwargs)``: an open RedisConversationLog under this test's prefix."""
    logs: list[RedisConversationLog] = []

    async def make(**kwargs: Any) -> RedisConversationLog:
        log = RedisConversationLog(redis_server.url, prefix=prefix, **kwargs)
        await log.open()
        logs.append(log)
        return log

    yield make
    for log in logs:
        await log.close()


async def test_turns_from_two_replicas_are_gapless_durable_and_paged(open_log: Any) -> None:
    a, b = await open_log(), await open_log()
    indices = await asyncio.gather(
        *(log.append("s1", turn(f"m{i}")) for i, log in enumerate([a, b] * 10))
    )
    assert sorted(indices) == list(range(20))
    await a.append("s2", turn("other"))
    await a.close()

    reader = await open_log()
    first = await reader.page("s1", 0, 5)
    assert [t.index for t in first.turns] == [0, 1, 2, 3, 4]
    assert (first.next_index, first.total) == (5, 20)
    assert first.turns[0].intent == turn("x").intent
    assert sorted(t.user_message for t in (await reader.page("s1", 0, 100)).turns) == sorted(
        f"m{i}" for i in range(20)
    )
    last = await reader.page("s1", 18, 5)
    assert [t.index for t in last.turns] == [18, 19]
    assert last.next_index is None
    assert (await reader.page("s2", 0, 10)).total == 1
    assert (await reader.page("nobody", 0, 10)).turns == ()


async def test_a_keyed_turn_is_written_once_and_its_answer_replayed(open_log: Any) -> None:
    a, b = await open_log(), await open_log()
    k = key()
    assert await a.replay(k) is None
    index = await a.append("s1", turn("hi"), key=k, outcome=answer)
    assert await b.replay(k) == answer(index)
    with pytest.raises(TurnAlreadyRecorded) as again:
        await b.append("s1", turn("hi (composed again)"), key=k, outcome=answer)
    assert again.value.outcome == answer(index)
    page = await b.page("s1", 0, 10)
    assert [t.user_message for t in page.turns] == ["hi"]


async def test_a_key_reused_for_another_request_is_refused_and_writes_nothing(
    open_log: Any,
) -> None:
    log = await open_log()
    k = key("h1")
    await log.append("s1", turn("hi"), key=k, outcome=answer)
    other = RequestKey(k.request_id, "h2")
    with pytest.raises(AlreadyExists) as refused:
        await log.replay(other)
    assert refused.value.reason == ErrorReason.REQUEST_ID_REUSED
    with pytest.raises(AlreadyExists):
        await log.append("s1", turn("something else"), key=other, outcome=answer)
    assert (await log.page("s1", 0, 10)).total == 1


async def test_concurrent_duplicates_on_two_replicas_write_once(open_log: Any) -> None:
    a, b = await open_log(), await open_log()
    keys = [key() for _ in range(20)]

    async def attempt(log: RedisConversationLog, k: RequestKey) -> str:
        try:
            return answer(await log.append("s1", turn(k.request_id), key=k, outcome=answer))
        except TurnAlreadyRecorded as recorded:
            return recorded.outcome

    outcomes = await asyncio.gather(*(attempt(log, k) for k in keys for log in (a, b, a)))
    page = await a.page("s1", 0, 100)
    assert page.total == 20
    assert sorted(t.user_message for t in page.turns) == sorted(k.request_id for k in keys)
    by_key = {t.user_message: t.index for t in page.turns}
    for i, k in enumerate(keys):  # every attempt of a key answers with the turn written
        assert outcomes[3 * i : 3 * i + 3] == [answer(by_key[k.request_id])] * 3


async def test_recorded_answers_expire_with_the_retention(
    open_log: Any, redis_server: RedisServer, prefix: str
) -> None:
    log = await open_log(retention_s=1.0)
    k = key()
    await log.append("s1", turn("hi"), key=k, outcome=answer)
    client = aioredis.from_url(redis_server.url)
    try:
        ttl = await client.pttl(f"{prefix}req:{k.request_id}")
        assert 0 < ttl <= 1000
        await asyncio.sleep(1.2)
        assert await client.exists(f"{prefix}req:{k.request_id}") == 0
    finally:
        await client.aclose()
    assert await log.replay(k) is None
    assert (await log.page("s1", 0, 10)).total == 1  # the turn itself stays


async def test_while_redis_is_down_writes_degrade_and_reads_are_unavailable(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    log = RedisConversationLog(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    try:
        await log.open()
        await log.append("s1", turn("before"))
        stop_process(proc)
        with pytest.raises(DependencyFailed) as failed:
            await log.append("s1", turn("while down"), key=key(), outcome=answer)
        assert failed.value.reason == "UNAVAILABLE"
        with pytest.raises(Unavailable):
            await log.page("s1", 0, 10)
        proc = start_redis(port, tmp_path)  # same data: the append-only file
        assert [t.user_message for t in (await log.page("s1", 0, 10)).turns] == ["before"]
    finally:
        await log.close()
        stop_process(proc)
    with pytest.raises(Unavailable, match="cannot be reached"):
        await RedisConversationLog(f"redis://127.0.0.1:{port}/0", timeout_s=0.5).open()


# -- two orchestration servers on one Redis --------------------------------------------


class SlowContext(ctx_grpc.ContextServiceServicer):
    """GetContext takes a while, so duplicates sent to two servers both get past their
    replay check before either commits; AppendMemory records the keys it got."""

    def __init__(self) -> None:
        self.memory_ids: list[str] = []

    async def GetContext(self, request: Any, context: Any) -> ctx_pb.GetContextResponse:
        await asyncio.sleep(0.1)
        return ctx_pb.GetContextResponse()

    async def AppendMemory(self, request: Any, context: Any) -> ctx_pb.AppendMemoryResponse:
        self.memory_ids.append(request.request_id)
        return ctx_pb.AppendMemoryResponse()


class SlowContextModule:
    def __init__(self) -> None:
        self.servicer = SlowContext()  # type: ignore[abstract]  # the two methods a turn uses

    @property
    def service_names(self) -> tuple[str, ...]:
        return ("switchboard.context.v1.ContextService",)

    def register(self, server: grpc.aio.Server) -> None:
        ctx_grpc.add_ContextServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_duplicates_sent_to_two_servers_make_one_turn(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path, grace_period_s=0.0),
        orchestration=OrchestrationSettings(
            store="redis",
            redis_url=SecretStr(redis_server.url),
            redis_key_prefix=prefix,
            # nothing listens there: classification fails fast and the turn degrades
            classification_target=f"127.0.0.1:{free_port()}",
        ),
    )
    only = [ServiceName.CONTEXT, ServiceName.ORCHESTRATION]
    one, two = SlowContextModule(), SlowContextModule()
    async with (
        start_services(tmp_path / "a", only, settings=settings,
                       modules={ServiceName.CONTEXT: one}) as a,
        start_services(tmp_path / "b", only, settings=settings,
                       modules={ServiceName.CONTEXT: two}) as b,
    ):  # fmt: skip
        stubs = [pb_grpc.OrchestrationServiceStub(r.channel(ServiceName.ORCHESTRATION))
                 for r in (a, b)]  # fmt: skip
        requests = [pb.ChatRequest(message=f"set an alarm {i}", session_id="race",
                                   request_id=str(uuid.uuid4())) for i in range(8)]  # fmt: skip
        replies = await asyncio.gather(*(s.Chat(r) for r in requests for s in stubs))
        page = await stubs[1].GetConversation(
            pb.GetConversationRequest(session_id="race", page_size=100)
        )
    assert len(page.turns) == len(requests)
    assert sorted(t.index for t in page.turns) == list(range(len(requests)))
    for i, request in enumerate(requests):
        first, second = replies[2 * i], replies[2 * i + 1]
        assert (first.reply, first.turn_index) == (second.reply, second.turn_index)
        logged = next(t for t in page.turns if t.index == first.turn_index)
        assert logged.user_message == request.message
    # each turn's memory write went out under one derived key, from either server
    memory_ids = one.servicer.memory_ids + two.servicer.memory_ids
    assert len(set(memory_ids)) == len(requests)


async def test_a_server_started_before_its_redis_serves_once_redis_is_up(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path, grace_period_s=0.0),
        orchestration=OrchestrationSettings(
            store="redis",
            redis_url=SecretStr(f"redis://127.0.0.1:{port}/0"),
            redis_timeout_s=0.5,
        ),
    )
    server, app_port = await create_server(settings, ServiceName.ORCHESTRATION, "127.0.0.1:0")
    starting = asyncio.create_task(server.start())
    proc = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="")
            await asyncio.sleep(0.5)
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            proc = start_redis(port, tmp_path)
            await asyncio.wait_for(starting, 10)
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        starting.cancel()
        await server.stop(0)
        if proc is not None:
            stop_process(proc)
