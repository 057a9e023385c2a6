"""A real Prometheus (``/usr/bin/prometheus``, installed by
scripts/install-system-deps.sh) scraping a local mesh the way the Compose rendering's
scrape config does: every sidecar's ``/stats/prometheus`` and every app's ``/metrics``,
labelled ``service`` and ``component``. Stopped by its pid afterwards."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from switchboard_server.testing import PortPool

PROMETHEUS = "/usr/bin/prometheus"


def _target(url: str) -> tuple[str, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.netloc, parts.path or "/"


def scrape_config(processes: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    """The mesh's state (``state.json`` processes) as scrape jobs: one per path."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for proc in processes:
        name, endpoints = proc["name"], proc["endpoints"]
        service = name.split("-", 1)[0].split(".", 1)[0]
        if name.endswith(".sidecar") and "admin" in endpoints:
            target, _ = _target(endpoints["admin"])
            path, component = "/stats/prometheus", "sidecar"
        elif "metrics" in endpoints:
            target, path = _target(endpoints["metrics"])
            component = "comparator" if name == "comparator" else "app"
        else:
            continue
        jobs.setdefault(path, []).append(
            {"targets": [target], "labels": {"service": service, "component": component}}
        )
    return {
        "global": {"scrape_interval": f"{interval_s:g}s", "scrape_timeout": f"{interval_s:g}s"},
        "scrape_configs": [
            {"job_name": f"job{i}", "metrics_path": path, "static_configs": targets}
            for i, (path, targets) in enumerate(sorted(jobs.items()))
        ],
    }


@contextlib.contextmanager
def prometheus(
    tmp: Path, processes: list[dict[str, Any]], interval_s: float = 1.0
) -> Iterator[str]:
    """Run Prometheus over ``processes``; yields its URL once every target is up."""
    if not shutil.which(PROMETHEUS):
        pytest.skip(f"{PROMETHEUS} is not installed (scripts/install-system-deps.sh)")
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(processes, interval_s)))
    port = PortPool()()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc, sum(len(j["static_configs"]) for j in _jobs(config)))
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _jobs(config: Path) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = yaml.safe_load(config.read_text())["scrape_configs"]
    return jobs


def _wait_up(url: str, proc: subprocess.Popen[bytes], targets: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {proc.returncode}")
        try:
            up = httpx.get(f"{url}/api/v1/query", params={"query": "sum(up)"}, timeout=2).json()
            result = up["data"]["result"]
            if result and float(result[0]["value"][1]) >= targets:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"prometheus at {url} never scraped all {targets} targets")


def query(url: str, promql: str) -> float:
    """A scalar answer (the first series' value; 0 without one)."""
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0
