"""A private Docker engine for the smoke test: started and stopped by PID.

``dockerd --iptables=false --ip-forward=false --bridge=none`` leaves the host's network
alone (no iptables rules, no docker0 bridge, no forwarding switched on); user-defined
Compose networks still work, and published ports go through docker-proxy on loopback.
Its data root, exec root and socket live in one scratch directory removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0


def docker_cli() -> str:
    """Debian's docker client (the same release as its dockerd), else whatever is first
    on PATH; the legacy builder is used either way (no buildx plugin needed)."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def client_env(socket: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DOCKER_HOST=f"unix://{socket}",
        DOCKER_BUILDKIT="0",
        COMPOSE_DOCKER_CLI_BUILD="0",
    )
    return env


@contextmanager
def dockerd(workdir: Path) -> Iterator[dict[str, str]]:
    """Run dockerd in ``workdir``; yields the environment its clients need."""
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "docker.sock"
    log = (workdir / "dockerd.log").open("wb")
    argv = [
        "dockerd",
        "--iptables=false",
        "--ip-forward=false",
        "--bridge=none",
        "--data-root",
        str(workdir / "data"),
        "--exec-root",
        str(workdir / "exec"),
        "--pidfile",
        str(workdir / "dockerd.pid"),
        "--host",
        f"unix://{socket}",
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = client_env(socket)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {process.returncode}: see {log.name}")
            ready = subprocess.run(
                [docker_cli(), "version", "--format", "{{.Server.Version}}"],
                env=env,
                capture_output=True,
                text=True,
            )
            if ready.returncode == 0:
                print(f"dockerd {ready.stdout.strip()} (pid {process.pid}) on {socket}", flush=True)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd not answering after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        yield env
    finally:
        _stop(process)
        log.close()
        # dockerd unmounts its overlays on a clean stop; after a crash some may be left.
        _unmount_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _unmount_under(workdir: Path) -> None:
    prefix = str(workdir.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
