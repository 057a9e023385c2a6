"""The thin gRPC side of ``switchboard load``: one Chat per shot through the typed client.

Any address that serves ``switchboard.orchestration.v1.OrchestrationService`` is a
target: the edge Envoy (the default), an orchestration sidecar, or the app itself.
Requests are spread over ``connections`` channels (HTTP/2 connections), so a proxy in
front can balance them as it would many users.
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Self

from switchboard_client._config import ConnectConfig
from switchboard_client._errors import SwitchboardError
from switchboard_client._orchestration import OrchestrationClient
from switchboard_client.loadgen.plan import Shot
from switchboard_client.loadgen.report import OK, Outcome


class ChatDriver:
    """``send(shot, timeout_s)`` for :func:`~switchboard_client.loadgen.runner.run_load`."""

    def __init__(self, config: ConnectConfig, *, connections: int = 1) -> None:
        if connections < 1:
            raise ValueError("ChatDriver connections must be at least 1")
        # A local subchannel pool per channel: gRPC would otherwise share one connection.
        own = dataclasses.replace(
            config, channel_options=(*config.channel_options, ("grpc.use_local_subchannel_pool", 1))
        )
        self._clients = [OrchestrationClient(own) for _ in range(connections)]

    async def __aenter__(self) -> Self:
        for client in self._clients:
            await client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            await client.close()

    async def send(self, shot: Shot, timeout_s: float) -> Outcome:
        client = self._clients[shot.seq % len(self._clients)]
        try:
            response = await client.chat(
                shot.message, session_id=shot.session_id, timeout_s=timeout_s
            )
        except SwitchboardError as exc:
            return Outcome(exc.code.name)
        return Outcome(OK, degraded=len(response.degraded) > 0)
