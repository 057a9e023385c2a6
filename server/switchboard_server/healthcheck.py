"""``switchboard-health``: one ``grpc.health.v1`` Check, for container health checks.

``switchboard-health --address HOST:PORT [--service NAME] [--timeout S]`` exits 0 only
when the server answers ``SERVING`` for ``NAME`` (the empty name, the server's overall
status, by default). Any other answer, an unknown service, a refused connection or a
missed deadline exits 1, Docker's "unhealthy", with one line on stderr saying why.

A real RPC, not a port check: a server whose port is open but whose store is not (or
that is draining) reports ``NOT_SERVING`` and the container is not counted healthy. It
is the Docker ``HEALTHCHECK`` of the app image and the Compose healthchecks; Kubernetes
uses its native gRPC probe for the same call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HEALTHY = 0
UNHEALTHY = 1


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="switchboard-health",
        description="Exit 0 only if a grpc.health.v1 Check answers SERVING.",
    )
    parser.add_argument("--address", required=True, help="HOST:PORT of the gRPC server.")
    parser.add_argument(
        "--service", default="", help="Service name to check (default: the overall status)."
    )
    parser.add_argument(
        "--timeout", type=_positive, default=2.0, help="Deadline of the call, seconds (2)."
    )
    return parser.parse_args(argv)


def check(address: str, service: str, timeout: float) -> tuple[bool, str]:
    """``(serving, what was seen)`` of one Check against ``address``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            reply = stub.Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else "UNKNOWN"
            return False, f"{name}: {exc.details() if isinstance(exc, grpc.Call) else exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    serving, seen = check(args.address, args.service, args.timeout)
    target = f"{args.address} service={args.service or '(overall)'}"
    print(f"{target}: {seen}", file=sys.stdout if serving else sys.stderr)
    return HEALTHY if serving else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
