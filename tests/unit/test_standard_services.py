"""Reflection v1 is v1alpha under a new package: same messages, same bytes."""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from grpc_reflection.v1alpha import reflection_pb2

from switchboard.classification.v1 import classification_service_pb2
from switchboard_server.standard_services import V1_SERVICE, reflection_pool

CLASSIFICATION = classification_service_pb2.DESCRIPTOR.services_by_name[
    "ClassificationService"
].full_name


def test_the_v1_descriptor_describes_the_same_messages_as_v1alpha() -> None:
    pool = reflection_pool([CLASSIFICATION])
    v1 = pool.FindServiceByName(V1_SERVICE)
    [method] = v1.methods
    assert method.name == "ServerReflectionInfo"
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"
    for alpha in reflection_pb2.DESCRIPTOR.message_types_by_name.values():
        ours = pool.FindMessageTypeByName(f"grpc.reflection.v1.{alpha.name}")
        assert [(f.name, f.number, f.type) for f in ours.fields] == [
            (f.name, f.number, f.type) for f in alpha.fields
        ]


def test_a_v1alpha_message_reads_as_v1() -> None:
    pool = reflection_pool([CLASSIFICATION])
    v1_request: Any = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    alpha = reflection_pb2.ServerReflectionRequest(
        host="h", file_containing_extension=reflection_pb2.ExtensionRequest(extension_number=7)
    )
    read = v1_request.FromString(alpha.SerializeToString())
    assert read.host == "h"
    assert read.file_containing_extension.extension_number == 7


def test_the_pool_holds_the_service_and_what_it_imports() -> None:
    pool = reflection_pool([CLASSIFICATION])
    service = pool.FindServiceByName(CLASSIFICATION)
    assert service.methods_by_name["Classify"].input_type.name == "ClassifyRequest"
    assert pool.FindServiceByName("grpc.health.v1.Health")
