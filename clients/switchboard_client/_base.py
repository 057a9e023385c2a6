"""The shared part of every client: channel ownership, default deadline, error mapping."""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc

from switchboard_client._config import ConnectConfig
from switchboard_client._errors import from_rpc_error

R = TypeVar("R")

REQUEST_ID_HEADER = "x-switchboard-request-id"
"""The metadata key that repeats a write's body ``request_id``: the mesh sees it and may
resend a keyed write (the server deduplicates it); a server refuses a request whose
header and body key disagree."""


def request_id_or_new(request_id: str | None) -> str:
    """``request_id``, or a fresh UUID (the idempotency key of one logical call)."""
    return str(uuid.uuid4()) if request_id is None else request_id


class BaseClient(abc.ABC):
    """An async context manager that owns a ``grpc.aio`` channel (unless one is given)."""

    def __init__(
        self, config: ConnectConfig | None = None, *, channel: grpc.aio.Channel | None = None
    ) -> None:
        self.config = config or ConnectConfig()
        self._channel = channel
        self._owns_channel = channel is None

    async def __aenter__(self) -> Self:
        self.channel  # noqa: B018 - open the channel inside the running loop
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            size = self.config.max_message_bytes
            options: list[tuple[str, Any]] = [
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                *self.config.channel_options,
            ]
            if self.config.tls_ca_file:
                with open(self.config.tls_ca_file, "rb") as ca:
                    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
                self._channel = grpc.aio.secure_channel(
                    self.config.target, credentials, options=options
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.config.target, options=options)
            self._bind(self._channel)
        return self._channel

    @abc.abstractmethod
    def _bind(self, channel: grpc.aio.Channel) -> None:
        """Create the stubs of the concrete client."""

    async def close(self) -> None:
        if self._channel is not None and self._owns_channel:
            await self._channel.close(None)
            self._channel = None

    def _options(
        self, timeout_s: float | None, correlation_id: str | None, request_id: str = ""
    ) -> dict[str, Any]:
        """Call options; a write's ``request_id`` also goes out as :data:`REQUEST_ID_HEADER`."""
        metadata = list(self.config.metadata)
        if self.config.token:
            metadata.append(("authorization", f"Bearer {self.config.token}"))
        if correlation_id:
            metadata.append(("x-correlation-id", correlation_id))
        if request_id:
            metadata.append((REQUEST_ID_HEADER, request_id))
        return {
            "timeout": self.config.timeout_s if timeout_s is None else timeout_s,
            "metadata": tuple(metadata),
            "wait_for_ready": self.config.wait_for_ready,
        }

    async def _unary(self, call: Callable[..., R], request: Any, **options: Any) -> R:
        """Await a unary call (stubs are typed as sync), mapping failures to our errors."""
        try:
            return await cast(Awaitable[R], call(request, **options))
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def _stream(
        self, call: Callable[..., Any], request: Any, **options: Any
    ) -> AsyncIterator[Any]:
        """Iterate a server stream; leaving early cancels the call."""
        stream = call(request, **options)
        try:
            async for item in stream:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()
