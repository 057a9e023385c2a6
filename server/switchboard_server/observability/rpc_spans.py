"""What the client and server span code share (:mod:`.client_tracing`,
:mod:`.server_tracing`): the library's method attributes and a bounded memo."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import grpc
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_GRPC_STATUS_CODE,
    RPC_METHOD,
    RPC_SERVICE,
    RPC_SYSTEM,
)
from opentelemetry.util.types import AttributeValue

Attributes = dict[str, AttributeValue]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MAX_MEMO = 1024  # entries a memo keeps before it starts over (a few methods or peers)


def memoised(memo: dict[K, V], key: K, make: Callable[[K], V]) -> V:
    """``make(key)``, kept in ``memo`` (which starts over when full); the value is
    shared: copy it before changing it."""
    found = memo.get(key)
    if found is None:
        if len(memo) >= MAX_MEMO:
            memo.clear()
        found = memo[key] = make(key)
    return found


def rpc_attributes(method: str) -> Attributes:
    """The attributes the library gives a span from its method alone, client or server
    side (``/pkg.Service/Method``), in the library's order; the status code is OK
    until the call says otherwise."""
    attributes: Attributes = {
        RPC_SYSTEM: "grpc",
        RPC_GRPC_STATUS_CODE: grpc.StatusCode.OK.value[0],
    }
    if method:
        service, name = method.lstrip("/").split("/", 1)
        attributes[RPC_METHOD] = name
        attributes[RPC_SERVICE] = service
    return attributes
