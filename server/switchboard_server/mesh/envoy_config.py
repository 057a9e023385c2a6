"""Building blocks of the Envoy configs: typed-config helpers shared by the renderers."""

from __future__ import annotations

from typing import Any

Config = dict[str, Any]


def seconds(value: float) -> str:
    return f"{value:.3f}s"


def address(host: str, port: int) -> Config:
    return {"socket_address": {"address": host, "port_value": port}}


def typed(type_name: str, **fields: Any) -> Config:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}
