"""The smoke test's Compose file: the committed docker/compose.yaml with what cannot be
had here swapped out, every change listed.

* Redis and Prometheus: Debian's packages on the local base (``images.SUBSTITUTES``).
* Jaeger: no Jaeger or OpenTelemetry Collector is installable from the registries this
  machine reaches, so the ``jaeger`` service runs Switchboard's own trace receiver
  (``switchboard trace-receiver``) on the same OTLP port 4317; its HTTP query API
  (``GET /traces/<id>``) takes the place of Jaeger's.
* Grafana: no image and no Debian package; not started (nothing depends on it).
* ``./auth`` (the edge's JWKS) and ``./certs`` (each Envoy's certificates): directories
  of the run's own, filled by ``switchboard token init`` and ``switchboard certs init
  --out``; the Chat carries a token ``switchboard token mint`` signs.
* Published ports: remapped to free loopback ports (8080 and friends may be taken).
* Bind-mounted paths: made absolute, so the file can live outside docker/.
  (The edge's page and descriptor set are in the Envoy image, at the container paths
  the rendered config names: nothing of the checkout is mounted for them.)
* The top-level ``name``: dropped, Debian's docker-compose 1.29 does not know it (the
  project is named with ``-p``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scripts.container_smoke.images import APP, SUBSTITUTES

OTLP_PORT = 4317
JAEGER_UI_PORT = 16686
SKIPPED = ("grafana",)
HEALTHCHECK_SLACK = {"start_period": "240s", "timeout": "15s", "retries": 10}


@dataclass
class Smoke:
    """The derived file and what the checks need to know about it."""

    compose: dict[str, Any]
    published: dict[tuple[str, int], int] = field(default_factory=dict)  # (svc, port) -> host
    changes: list[str] = field(default_factory=list)

    def services(self) -> list[str]:
        return sorted(self.compose["services"])

    def apps(self) -> dict[str, str]:
        """Compose service of each app container -> the Switchboard service it runs."""
        found = {}
        for name, spec in self.compose["services"].items():
            command = spec.get("command") or []
            if command[:3] == ["python", "-m", "switchboard_server"] and len(command) == 4:
                found[name] = command[3]
        return found


def derive(source: Path, free_port: Any, own: dict[str, Path] | None = None) -> Smoke:
    """``own``: directories of this run mounted instead of the file's (``./auth`` that
    ``switchboard token init`` fills, ``./certs`` that ``switchboard certs init --out``
    fills), so docker/auth and docker/certs of the checkout stay untouched."""
    compose = copy.deepcopy(yaml.safe_load(source.read_text()))
    smoke = Smoke(compose)
    if compose.pop("name", None) is not None:
        smoke.changes.append("top-level name: dropped (docker-compose v1 rejects it; -p names it)")
    services: dict[str, Any] = compose["services"]
    for name in SKIPPED:
        if services.pop(name, None) is not None:
            smoke.changes.append(f"{name}: not started (no image can be had here)")
    for name in ("redis", "prometheus"):
        upstream = services[name]["image"]
        services[name]["image"] = SUBSTITUTES
        smoke.changes.append(f"{name}: {upstream} -> {SUBSTITUTES} (Debian's package)")
    services["prometheus"]["entrypoint"] = ["/usr/bin/prometheus"]
    jaeger = services["jaeger"]
    smoke.changes.append(
        f"jaeger: {jaeger['image']} -> {APP} running `switchboard trace-receiver` "
        f"(OTLP/gRPC :{OTLP_PORT}, query API on :{JAEGER_UI_PORT})"
    )
    jaeger.update(
        image=APP,
        command=[
            "switchboard",
            "trace-receiver",
            "--port",
            str(OTLP_PORT),
            "--query-port",
            str(JAEGER_UI_PORT),
        ],
        environment={"SWITCHBOARD_HOST": "0.0.0.0"},
        read_only=True,
        tmpfs=["/tmp"],
        # The image's HEALTHCHECK is the app's gRPC check; the receiver is not an app.
        healthcheck={"disable": True},
    )
    redis = services["redis"]
    if redis.get("command", [None])[0] == "redis-server":
        # What the official image's entrypoint does for a redis-server without a config.
        redis["command"] = [*redis["command"], "--protected-mode", "no"]
        smoke.changes.append("redis: --protected-mode no (as the official image's entrypoint)")
    for spec in services.values():
        # Not a disabled one: Compose refuses `disable` with other options.
        if "healthcheck" in spec and not spec["healthcheck"].get("disable"):
            spec["healthcheck"].update(HEALTHCHECK_SLACK)
    slack = ", ".join(f"{k} {v}" for k, v in HEALTHCHECK_SLACK.items())
    smoke.changes.append(f"healthchecks: {slack} (a loaded 2-core machine: the check's own")
    smoke.changes[-1] += " Python start can take seconds)"
    for prefix, directory in (own or {}).items():
        for name, spec in services.items():
            for i, volume in enumerate(spec.get("volumes", [])):
                if volume.startswith(f"./{prefix}/"):
                    rest = volume.removeprefix(f"./{prefix}/")
                    spec["volumes"][i] = f"{directory.resolve()}/{rest}"
                    smoke.changes.append(f"{name}: {volume} -> {spec['volumes'][i]}")
    for name, spec in services.items():
        spec["volumes"] = [_absolute(v, source.parent) for v in spec.get("volumes", [])]
        ports = []
        for published in spec.get("ports", []):
            container = int(str(published).rsplit(":", 1)[1])
            host = free_port()
            smoke.published[(name, container)] = host
            ports.append(f"127.0.0.1:{host}:{container}")
        if ports:
            spec["ports"] = ports
    smoke.changes.append(
        "ports: "
        + ", ".join(f"{s}:{c} on 127.0.0.1:{h}" for (s, c), h in sorted(smoke.published.items()))
    )
    return smoke


def _absolute(volume: str, base: Path) -> str:
    if volume.startswith("./"):
        return str((base / volume[2:]).resolve()) if ":" not in volume else _bind(volume, base)
    return volume


def _bind(volume: str, base: Path) -> str:
    host, rest = volume.split(":", 1)
    return f"{(base / host).resolve()}:{rest}"


def write(smoke: Smoke, path: Path) -> Path:
    path.write_text(yaml.safe_dump(smoke.compose, sort_keys=False))
    return path
