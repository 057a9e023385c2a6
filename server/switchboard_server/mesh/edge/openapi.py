"""An OpenAPI 3.1 document of the edge's REST surface, read from the descriptor set.

Every method with a ``google.api.http`` option becomes an operation. The schemas follow
what the transcoder sends and accepts (see :mod:`.rest`): lowerCamelCase JSON names,
enums as strings, ``google.protobuf.Timestamp`` as an RFC 3339 string, a server stream
as newline-delimited JSON, errors as ``google.rpc.Status``. Descriptions are the proto
comments. ``make proto`` writes ``docs/openapi.yaml``; a test regenerates it and fails
when the committed copy differs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

FieldProto = descriptor_pb2.FieldDescriptorProto
Schema = dict[str, Any]

REF = "#/components/schemas/"
STATUS = "google.rpc.Status"
# Error details the services send; listed so a reader can decode `details`.
ERROR_DETAILS = ("google.rpc.BadRequest", "google.rpc.ErrorInfo")
VERBS = ("get", "put", "post", "delete", "patch")
PATH_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(=[^}]*)?\}")

_SCALARS: dict[int, Schema] = {
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldProto.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # 64-bit integers are JSON strings in the proto3 JSON mapping.
    FieldProto.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldProto.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.Any": {
        "type": "object",
        "description": "A message of the type named by `@type`, with that type's fields.",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


@dataclass(frozen=True)
class Route:
    """One REST route: a method's ``google.api.http`` rule."""

    service: str  # full name
    method: descriptor_pb2.MethodDescriptorProto
    verb: str
    path: str
    body: str
    comment: str

    @property
    def operation_id(self) -> str:
        return f"{self.service.rsplit('.', 1)[1]}_{self.method.name}"


@dataclass(frozen=True)
class _Type:
    proto: Any  # DescriptorProto or EnumDescriptorProto
    comments: dict[tuple[int, ...], str]
    path: tuple[int, ...]

    def comment(self, *sub: int) -> str:
        return self.comments.get(self.path + sub, "")


class _Index:
    """Messages, enums and comments of a descriptor set by full name."""

    def __init__(self, descriptors: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, _Type] = {}
        self.enums: dict[str, _Type] = {}
        self.files = list(descriptors.file)
        self.comments: dict[str, dict[tuple[int, ...], str]] = {}
        for file in self.files:
            comments = {
                tuple(loc.path): _clean(loc.leading_comments)
                for loc in file.source_code_info.location
                if loc.leading_comments
            }
            self.comments[file.name] = comments
            prefix = f"{file.package}." if file.package else ""
            for i, enum in enumerate(file.enum_type):
                self.enums[prefix + enum.name] = _Type(enum, comments, (5, i))
            for i, message in enumerate(file.message_type):
                self._add_message(prefix + message.name, message, comments, (4, i))

    def _add_message(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        comments: dict[tuple[int, ...], str],
        path: tuple[int, ...],
    ) -> None:
        self.messages[name] = _Type(message, comments, path)
        for i, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, comments, (*path, 3, i))
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = _Type(enum, comments, (*path, 4, i))

    def routes(self) -> Iterator[Route]:
        for file in self.files:
            comments = self.comments[file.name]
            for s, service in enumerate(file.service):
                for m, method in enumerate(service.method):
                    rule = method.options.Extensions[annotations_pb2.http]
                    for binding in (rule, *rule.additional_bindings):
                        verb, path = _pattern(binding)
                        if path:
                            yield Route(
                                service=f"{file.package}.{service.name}",
                                method=method,
                                verb=verb,
                                path=path,
                                body=binding.body,
                                comment=comments.get((6, s, 2, m), ""),
                            )

    def service_comment(self, full_name: str) -> str:
        for file in self.files:
            for s, service in enumerate(file.service):
                if f"{file.package}.{service.name}" == full_name:
                    return self.comments[file.name].get((6, s), "")
        return ""


def _clean(comment: str) -> str:
    """A comment's text: the space after ``//`` dropped, indentation inside kept."""
    lines = [line.removeprefix(" ").rstrip() for line in comment.splitlines()]
    return "\n".join(lines).strip("\n")


def _summary(comment: str) -> tuple[str, str]:
    """The first sentence of a comment, and the rest of it."""
    text = " ".join(comment.split())
    match = re.match(r"(.+?\.)(\s+|$)(.*)", text)
    if match is None:
        return text, ""
    return match.group(1), match.group(3)


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    for verb in VERBS:
        if rule.HasField(verb):
            return verb, str(getattr(rule, verb))
    if rule.HasField("custom"):
        return rule.custom.kind.lower(), rule.custom.path
    return "", ""


def _type_name(field: FieldProto) -> str:
    return field.type_name.lstrip(".")


class _Builder:
    def __init__(self, index: _Index) -> None:
        self.index = index
        self.schemas: dict[str, Schema] = {}

    # -- schemas ---------------------------------------------------------------------------
    def ref(self, full_name: str) -> Schema:
        if full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full_name])
        if full_name not in self.schemas:
            self.schemas[full_name] = {}  # placeholder: stops recursion
            if full_name in self.index.enums:
                self.schemas[full_name] = self._enum(self.index.enums[full_name])
            else:
                self.schemas[full_name] = self.message(full_name)
        return {"$ref": REF + full_name}

    def _enum(self, enum: _Type) -> Schema:
        schema: Schema = {"type": "string"}
        if enum.comment():
            schema["description"] = enum.comment()
        schema["enum"] = [value.name for value in enum.proto.value]
        return schema

    def message(self, full_name: str, *, without: frozenset[str] = frozenset()) -> Schema:
        message = self.index.messages[full_name]
        schema: Schema = {"type": "object"}
        description = message.comment()
        oneofs = self._oneofs(message.proto)
        if oneofs:
            description = "\n\n".join(filter(None, [description, *oneofs]))
        if description:
            schema["description"] = description
        properties: Schema = {}
        for i, field in enumerate(message.proto.field):
            if field.name in without:
                continue
            properties[field.json_name] = self.field(field, message.comment(2, i))
        schema["properties"] = properties
        return schema

    def _oneofs(self, message: descriptor_pb2.DescriptorProto) -> list[str]:
        notes = []
        for i, oneof in enumerate(message.oneof_decl):
            members = [
                f"`{f.json_name}`"
                for f in message.field
                if f.HasField("oneof_index") and f.oneof_index == i and not f.proto3_optional
            ]
            if members:
                notes.append(f"At most one of {', '.join(members)} is set ({oneof.name}).")
        return notes

    def field(self, field: FieldProto, comment: str) -> Schema:
        entry = self.index.messages.get(_type_name(field))
        if entry is not None and entry.proto.options.map_entry:
            value = self.field(entry.proto.field[1], "")
            schema: Schema = {"type": "object", "additionalProperties": value}
        elif field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
            schema = self.ref(_type_name(field))
            if field.label == FieldProto.LABEL_REPEATED:
                schema = {"type": "array", "items": schema}
        else:
            schema = dict(_SCALARS[field.type])
            if field.label == FieldProto.LABEL_REPEATED:
                schema = {"type": "array", "items": schema}
        if comment:
            schema["description"] = comment
        return schema

    # -- operations --------------------------------------------------------------------------
    def operation(self, route: Route) -> Schema:
        method = route.method
        request = method.input_type.lstrip(".")
        bound = [match.group(1) for match in PATH_VARIABLE.finditer(route.path)]
        message = self.index.messages[request]
        fields = {f.name: (i, f) for i, f in enumerate(message.proto.field)}
        summary, rest = _summary(route.comment)
        op: Schema = {"tags": [route.service.rsplit(".", 1)[1]], "operationId": route.operation_id}
        if summary:
            op["summary"] = summary
        if rest:
            op["description"] = rest
        parameters = [
            self._parameter(name, "path", *fields[name], message)
            for name in bound
            if name in fields
        ]
        if not route.body:
            parameters += [
                self._parameter(name, "query", i, field, message)
                for name, (i, field) in fields.items()
                if name not in bound
            ]
        if parameters:
            op["parameters"] = parameters
        if route.body == "*":
            body = self.message(request, without=frozenset(bound)) if bound else self.ref(request)
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        elif route.body:
            i, field = fields[route.body]
            schema = self.field(field, message.comment(2, i))
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        response = method.output_type.lstrip(".")
        description = self.index.messages[response].comment() or "OK"
        if method.server_streaming:
            description = (
                "A stream of messages, one JSON object per line (newline-delimited JSON). "
                + description
            )
            content = {"application/x-ndjson": {"schema": self.ref(response)}}
        else:
            content = {"application/json": {"schema": self.ref(response)}}
        op["responses"] = {
            "200": {"description": description, "content": content},
            "default": {
                "description": (
                    "An error: a google.rpc.Status with the HTTP status of its code "
                    "(INVALID_ARGUMENT: 400 with a google.rpc.BadRequest in `details`)."
                ),
                "content": {"application/json": {"schema": self.ref(STATUS)}},
            },
        }
        return op

    def _parameter(
        self, name: str, where: str, index: int, field: FieldProto, message: _Type
    ) -> Schema:
        schema = self.field(field, "")
        parameter: Schema = {"name": name, "in": where}
        comment = message.comment(2, index)
        if comment:
            parameter["description"] = comment
        parameter["required"] = where == "path"
        parameter["schema"] = schema
        return parameter


def openapi_document(descriptor_set: bytes, *, server_url: str) -> Schema:
    """The OpenAPI document of every ``google.api.http`` route in ``descriptor_set``."""
    index = _Index(descriptor_pb2.FileDescriptorSet.FromString(descriptor_set))
    builder = _Builder(index)
    paths: dict[str, Schema] = {}
    services: list[str] = []
    for route in index.routes():
        path = PATH_VARIABLE.sub(lambda m: "{" + m.group(1) + "}", route.path)
        paths.setdefault(path, {})[route.verb] = builder.operation(route)
        if route.service not in services:
            services.append(route.service)
    for name in ERROR_DETAILS:
        builder.ref(name)
    tags = [
        {"name": service.rsplit(".", 1)[1], "description": index.service_comment(service)}
        for service in services
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard REST API",
            "version": "v1",
            "description": (
                "The REST/JSON front door of the Switchboard edge: Envoy's gRPC-JSON "
                "transcoder calls the gRPC method of each route.\n\n"
                "Responses use the lowerCamelCase JSON names and include every field; "
                "requests may use the JSON names or the proto field names (`sessionId` or "
                "`session_id`), and unknown body fields are ignored. Enums are strings. "
                "Query parameters use the proto field names (the JSON names work too); an "
                "unknown query parameter is refused with 400.\n\n"
                "Errors are a google.rpc.Status with the HTTP status of its code: 400 "
                "INVALID_ARGUMENT (with the field violations in a google.rpc.BadRequest "
                "detail), 404 NOT_FOUND (also for a path no route matches), 429 "
                "RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED."
            ),
        },
        "servers": [{"url": server_url, "description": "The local edge (switchboard up)"}],
        "tags": tags,
        "paths": paths,
        "components": {"schemas": dict(sorted(builder.schemas.items()))},
    }


def _literal_blocks(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def to_yaml(document: Schema) -> str:
    """YAML with multi-line strings as literal blocks, so descriptions read like the
    comments they come from."""

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _literal_blocks)
    header = "# Generated by `make proto` (scripts/gen_openapi.py) from the protos; do not edit.\n"
    body = yaml.dump(document, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body
