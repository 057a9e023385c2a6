"""A container target's scrape listener, on a real Envoy: Prometheus gets Envoy's stats,
the app's metrics and /ready through it, and nothing else of the admin."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from switchboard_server.deploy.envoy import render_envoys
from switchboard_server.deploy.settings import DeploySettings
from switchboard_server.mesh.addresses import local_addresses
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.render import write_configs
from switchboard_server.mesh.topology import Topology, make_plan
from switchboard_server.testing import PortPool
from tests.support.deploy import default_settings
from tests.support.mesh_harness import sub_topology

pytestmark = pytest.mark.mesh

APP_METRICS = b"# TYPE app_up gauge\napp_up 1\n"


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(APP_METRICS if self.path == "/metrics" else b"")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def app_metrics() -> Iterator[int]:
    """A stand-in for an app's /metrics on a loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", PortPool()()), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_scrape_listener_serves_stats_metrics_and_ready_only(
    topology: Topology, app_metrics: int, tmp_path: Path
) -> None:
    pool = PortPool()
    settings = default_settings()
    scrape = pool()
    settings = dataclasses.replace(settings, deploy=DeploySettings(scrape_port=scrape))
    # The listener, not mTLS (the certificates live where a container mounts them).
    settings = dataclasses.replace(
        settings, mesh=settings.mesh.model_copy(update={"insecure": True})
    )

    def port(purpose: str, default: int) -> int:
        return app_metrics if purpose.endswith(".metrics") else pool()

    plan = make_plan(sub_topology(topology, {"classification": 1}), settings.mesh, ports=port)
    replica = plan.replicas["classification"][0]
    configs = render_envoys(
        plan,
        local_addresses(plan),  # on loopback here; 0.0.0.0 inside a pod
        settings,
        [replica],
        otlp_endpoint="",
        trace_sample_ratio=1.0,
        sds_dir=str(tmp_path),
    )
    paths = write_configs({"sidecar": configs[f"{replica.name}.sidecar"]}, tmp_path)
    envoy = subprocess.Popen(
        envoy_command(paths["sidecar"], settings.mesh),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{scrape}"
    try:
        with httpx.Client(timeout=2.0) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    ready = client.get(f"{base}/ready")
                    if ready.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the scrape listener never answered"
                assert envoy.poll() is None, "envoy exited"
                time.sleep(0.1)
            assert ready.text.strip() == "LIVE"
            stats = client.get(f"{base}/stats/prometheus")
            assert stats.status_code == 200
            assert "envoy_cluster_upstream_cx_total" in stats.text
            metrics = client.get(f"{base}/metrics")
            assert metrics.status_code == 200
            assert metrics.content == APP_METRICS
            # The rest of the admin is not reachable through it.
            assert client.post(f"{base}/quitquitquit").status_code == 404
            assert client.get(f"{base}/config_dump").status_code == 404
            assert client.get(f"{base}/stats").status_code == 404
            # Of the app's gRPC, only the health Check is routed (for the probes).
            assert client.post(f"{base}/grpc.health.v1.Health/Watch").status_code == 404
            time.sleep(0.2)
            assert envoy.poll() is None
    finally:
        envoy.terminate()
        try:
            envoy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            envoy.kill()
            envoy.wait()
