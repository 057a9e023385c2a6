"""What the benchmarks measure with: CPU time and stolen time from /proc, a mesh on ports
of its own, an open-loop load (free ports and waiting for SERVING: switchboard_server.testing)."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yaml

from switchboard_server.testing import PortPool

ROOT = Path(__file__).resolve().parents[2]


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time the processes ``pids`` used so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _steal_and_total() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)  # steal; user..steal, the eight states of all CPUs


class StolenTime:
    """The share of the CPUs' time the hypervisor gave to other guests since this was
    made ("steal" in /proc/stat, ``st`` in vmstat). On a shared VM every figure
    worsens with it: it tells a slow spell of the host from a slower build."""

    def __init__(self) -> None:
        self._since = _steal_and_total()

    def share(self) -> float:
        steal, total = _steal_and_total()
        return round((steal - self._since[0]) / max(1, total - self._since[1]), 3)


def mesh_log_excerpt(data_dir: Path, lines: int = 40) -> str:
    """The end of a mesh's log (``<data_dir>/mesh/mesh.log``) without the health-probe
    access lines: why ``switchboard up`` failed, kept before the temporary data goes."""
    log = data_dir / "mesh" / "mesh.log"
    if not log.exists():
        return "(no mesh log)"
    text = log.read_text(errors="replace").splitlines()
    return "\n".join([line for line in text if '"method": "Check"' not in line][-lines:])


def mesh_env(tmp: Path, ports: PortPool) -> dict[str, str]:
    """The environment of a ``switchboard up`` on ports of its own: a copy of
    ``envoy/topology.yaml`` in ``tmp`` with every port from ``ports``, the edge's too."""
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    for spec in raw["services"].values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports()
        spec["egress_ports"] = {callee: ports() for callee in spec.get("egress_ports", {})}
    topology = tmp / "topology.yaml"
    topology.write_text(yaml.safe_dump(raw))
    return {
        **os.environ,
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(topology),
        "SWITCHBOARD_MESH_EDGE_PORT": str(ports()),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(ports()),
        "SWITCHBOARD_MESH_FRONTDOOR_PORT": str(ports()),
        # the published figures are of the open edge (one client at thousands of calls
        # per second would meet the per-client limit); a run may override it
        "SWITCHBOARD_MESH_INSECURE": "true",
    }


def open_loop(
    start: Callable[[int], grpc.Future[Any]], count: int, rate: float
) -> list[tuple[float, grpc.Future[Any]]]:
    """Start call ``i`` (``start(i)``, a blocking stub's ``future()``) at ``i / rate``
    seconds; wait for all. Returns (latency ms from the call's scheduled start, call) in
    completion order.

    The scheduler sleeps with ``time.sleep`` (nanosecond timer) and each completion is
    timed on gRPC's polling thread. An asyncio scheduler would start calls late: the
    loop's epoll timeout has millisecond granularity and is rounded up, which would
    count as latency in every turn.
    """
    finished: list[tuple[float, grpc.Future[Any]]] = []
    all_done = threading.Semaphore(0)

    def on_done(scheduled: float, call: grpc.Future[Any]) -> None:
        finished.append(((time.perf_counter() - scheduled) * 1000.0, call))
        all_done.release()

    begin = time.perf_counter()
    for i in range(count):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        start(i).add_done_callback(functools.partial(on_done, scheduled))
    for _ in range(count):
        all_done.acquire()
    return finished
