"""A small gRPC-Web client over httpx (binary mode), as a browser's would call the edge.

The wire format (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md): each
message is a frame of one flag byte, a 4-byte big-endian length and the bytes; the
trailers come as the last frame (flag 0x80), ``key:value`` lines separated by CRLF. A
call that fails before any message may carry its status in the response headers
instead (trailers-only).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

import grpc
import httpx
from google.protobuf.message import Message
from google.rpc import status_pb2

CONTENT_TYPE = "application/grpc-web+proto"
TRAILER_FLAG = 0x80
HEADER = struct.Struct(">BI")

M = TypeVar("M", bound=Message)


@dataclass
class GrpcWebReply(Generic[M]):
    """What came back: HTTP status and headers, the messages, the gRPC status."""

    http_status: int
    headers: httpx.Headers
    messages: list[M] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    # How many body reads the messages arrived in, one entry per message.
    arrived_in_read: list[int] = field(default_factory=list)

    def _status_field(self, name: str) -> str | None:
        value: str | None = self.trailers.get(name, self.headers.get(name))
        return value

    @property
    def code(self) -> grpc.StatusCode:
        raw = self._status_field("grpc-status")
        assert raw is not None, f"no grpc-status (HTTP {self.http_status}, {self.headers})"
        return next(c for c in grpc.StatusCode if c.value[0] == int(raw))

    @property
    def details(self) -> str:
        return unquote(self._status_field("grpc-message") or "")

    @property
    def status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` of ``grpc-status-details-bin``; fails if absent."""
        raw = self._status_field("grpc-status-details-bin")
        assert raw is not None, "no grpc-status-details-bin"
        return status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))


def frame(message: Message) -> bytes:
    payload = message.SerializeToString()
    return HEADER.pack(0, len(payload)) + payload


def _trailers(payload: bytes) -> dict[str, str]:
    lines = payload.decode("latin-1").split("\r\n")
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {key.strip().lower(): value.strip() for key, value in pairs}


async def call(
    http: httpx.AsyncClient,
    base_url: str,
    method: str,
    request: Message,
    response_type: type[M],
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> GrpcWebReply[M]:
    """Call ``method`` (``/package.Service/Method``), unary or server streaming."""
    sent = {
        "content-type": CONTENT_TYPE,
        "accept": CONTENT_TYPE,
        "x-grpc-web": "1",
        "x-user-agent": "switchboard-tests",
        "grpc-timeout": f"{round(timeout_s * 1000)}m",
        **(headers or {}),
    }
    async with http.stream(
        "POST", f"{base_url}{method}", content=frame(request), headers=sent, timeout=timeout_s
    ) as response:
        reply: GrpcWebReply[M] = GrpcWebReply(response.status_code, response.headers)
        buffered = b""
        reads = 0
        async for chunk in response.aiter_raw():
            reads += 1
            buffered += chunk
            while len(buffered) >= HEADER.size:
                flags, length = HEADER.unpack_from(buffered)
                if len(buffered) < HEADER.size + length:
                    break
                payload = buffered[HEADER.size : HEADER.size + length]
                buffered = buffered[HEADER.size + length :]
                if flags & TRAILER_FLAG:
                    reply.trailers = _trailers(payload)
                else:
                    reply.messages.append(response_type.FromString(payload))
                    reply.arrived_in_read.append(reads)
        assert buffered == b"", f"{len(buffered)} bytes of an incomplete frame"
    return reply
