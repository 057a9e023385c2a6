"""The standard services every server of ours serves: health, and reflection in both
protocol versions (``grpc.reflection.v1`` and ``v1alpha``).

Both servicers are the libraries' asyncio ones, reached by their public aliases
``health.aio`` and ``reflection.aio``. grpc-stubs (1.53) does not know these aliases,
hence the ``type: ignore`` on them and :class:`HealthServicer`, the part of the health
servicer we use, as a Protocol.

grpcio-reflection (1.85) implements only ``grpc.reflection.v1alpha``, while grpcurl
(1.9 and later) and ``buf curl`` ask ``grpc.reflection.v1`` first. The two versions
have the same messages with the same field numbers: the ``v1`` proto is the ``v1alpha``
one under a new package name. So the ``v1`` service is served by the library's own
``v1alpha`` servicer, its messages read and written with the ``v1alpha`` classes (the
bytes are the same), and its descriptor, so that reflection also describes ``v1``, is
the installed ``v1alpha`` descriptor renamed to ``grpc.reflection.v1``.

Reflection reads a private descriptor pool holding only the served services' files
(and what they import), so nothing is added to the process-wide default pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
METHOD = "ServerReflectionInfo"


class HealthServicer(Protocol):
    """What we use of ``grpc_health.v1.health.aio.HealthServicer``."""

    async def set(self, service: str, status: int) -> None:
        """Set a service's status; Watch callers see the change."""
        ...

    async def enter_graceful_shutdown(self) -> None:
        """Every status NOT_SERVING, for good: later ``set`` calls are ignored."""
        ...


def add_health(server: grpc.aio.Server) -> HealthServicer:
    """Serve ``grpc.health.v1.Health``; the library's servicer, which answers SERVING
    for ``""`` until told otherwise."""
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer  # type: ignore[no-any-return]


def _renamed(type_name: str) -> str:
    old = f".{reflection_pb2.DESCRIPTOR.package}."
    return (
        f".{V1_PACKAGE}.{type_name.removeprefix(old)}" if type_name.startswith(old) else type_name
    )


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The ``grpc.reflection.v1`` file: the installed ``v1alpha`` one, renamed."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated=true and its language packages
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # setting it on a scalar field is an error
                field.type_name = _renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def _add_file(pool: descriptor_pool.DescriptorPool, file: FileDescriptor, added: set[str]) -> None:
    if file.name in added:
        return
    for dependency in file.dependencies:
        _add_file(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.AddSerializedFile(proto.SerializeToString())
    added.add(file.name)


def reflection_pool(service_names: Iterable[str]) -> descriptor_pool.DescriptorPool:
    """A pool with the files defining ``service_names`` (found in the default pool, i.e.
    imported generated code), health, and both reflection versions."""
    default = descriptor_pool.Default()
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for name in (*service_names, health.SERVICE_NAME, V1ALPHA_SERVICE):
        _add_file(pool, default.FindServiceByName(name).file, added)
    pool.AddSerializedFile(v1_file_descriptor().SerializeToString())
    return pool


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> tuple[str, ...]:
    """Serve reflection, in both versions, of ``service_names`` plus health and
    reflection itself; returns every service name it lists."""
    names = (*service_names, health.SERVICE_NAME, V1ALPHA_SERVICE, V1_SERVICE)
    pool = reflection_pool(service_names)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)  # type: ignore[attr-defined]
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(service, {METHOD: handler})
            for service in (V1ALPHA_SERVICE, V1_SERVICE)
        ]
    )
    return tuple(sorted(names))
