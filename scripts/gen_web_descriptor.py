"""Write the protobuf.js JSON descriptor of OrchestrationService for the web chat page.

Usage: python scripts/gen_web_descriptor.py OUT_FILE

The page (server/switchboard_server/mesh/web/) loads it with protobuf.js's
``Root.fromJSON`` to encode requests and decode responses. It is built from the
generated Python descriptors (run after scripts/gen_protos.py, as `make proto` does):
every message and enum the service reaches, in protobuf.js's JSON format, field names
in lowerCamelCase as protobuf.js names them. The output is deterministic; a test
regenerates it and compares it with the committed file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    ServiceDescriptor,
)

from switchboard.orchestration.v1 import orchestration_service_pb2

SERVICE = orchestration_service_pb2.DESCRIPTOR.services_by_name["OrchestrationService"]

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field(field: FieldDescriptor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if field.is_repeated:
        out["rule"] = "repeated"
    if field.message_type is not None:
        out["type"] = f".{field.message_type.full_name}"
    elif field.enum_type is not None:
        out["type"] = f".{field.enum_type.full_name}"
    else:
        out["type"] = _SCALARS[field.type]
    out["id"] = field.number
    if _camel(field.name) != field.name:
        out["protoName"] = field.name
    if _is_proto3_optional(field):
        out["options"] = {"proto3_optional": True}
    return out


def _is_proto3_optional(field: FieldDescriptor) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and oneof.name == f"_{field.name}" and len(oneof.fields) == 1


def _message(message: Descriptor) -> dict[str, Any]:
    out: dict[str, Any] = {"edition": "proto3"}
    oneofs = {
        (f"_{_camel(o.fields[0].name)}" if _is_proto3_optional(o.fields[0]) else _camel(o.name)): {
            "oneof": [_camel(f.name) for f in o.fields]
        }
        for o in message.oneofs
    }
    if oneofs:
        out["oneofs"] = oneofs
    out["fields"] = {_camel(f.name): _field(f) for f in message.fields}
    return out


def _enum(enum: EnumDescriptor) -> dict[str, Any]:
    return {"edition": "proto3", "values": {v.name: v.number for v in enum.values}}


def _service(service: ServiceDescriptor) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in service.methods:
        entry: dict[str, Any] = {
            "requestType": f".{method.input_type.full_name}",
            "responseType": f".{method.output_type.full_name}",
        }
        if method.server_streaming:
            entry["responseStream"] = True
        if method.client_streaming:
            entry["requestStream"] = True
        methods[method.name] = entry
    return {"edition": "proto3", "methods": methods}


def _reachable(service: ServiceDescriptor) -> dict[str, Descriptor | EnumDescriptor]:
    """Every message and enum the service's methods reach, by full name."""
    found: dict[str, Descriptor | EnumDescriptor] = {}
    pending = [t for m in service.methods for t in (m.input_type, m.output_type)]
    while pending:
        message = pending.pop()
        if message.full_name in found:
            continue
        found[message.full_name] = message
        for field in message.fields:
            if field.message_type is not None:
                pending.append(field.message_type)
            elif field.enum_type is not None:
                found[field.enum_type.full_name] = field.enum_type
    return found


def _insert(root: dict[str, Any], full_name: str, value: dict[str, Any]) -> None:
    *packages, name = full_name.split(".")
    node = root
    for package in packages:
        node = node.setdefault("nested", {}).setdefault(package, {})
    node.setdefault("nested", {})[name] = value


def descriptor(service: ServiceDescriptor = SERVICE) -> dict[str, Any]:
    """The protobuf.js JSON of ``service`` and everything it reaches."""
    root: dict[str, Any] = {}
    _insert(root, service.full_name, _service(service))
    for name, item in sorted(_reachable(service).items()):
        _insert(root, name, _message(item) if isinstance(item, Descriptor) else _enum(item))
    return root


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.write_text(json.dumps(descriptor(), indent=1, sort_keys=False) + "\n")
    print(out)


if __name__ == "__main__":
    main()
