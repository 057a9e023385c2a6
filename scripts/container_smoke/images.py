"""The images the smoke test runs, built with no registry.

* ``switchboard-base:bookworm``: ``mmdebstrap`` of Debian bookworm with python3 (and
  venv, for pip in the builders) piped into ``docker import``; the ``BASE_IMAGE`` of
  everything else. Users with a registry keep the default ``python:3.11-slim``.
* ``switchboard-app:dev`` and ``switchboard-envoy:dev`` from docker/*.Dockerfile, pip
  pointed at the host's wheelhouse of requirements.lock (served on loopback).
* ``switchboard-substitutes:local``: Debian's redis-server and prometheus on that base,
  standing in for the upstream Redis and Prometheus images.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.container_smoke.dockerd import docker_cli

BASE = "switchboard-base:bookworm"
APP = "switchboard-app:dev"
ENVOY = "switchboard-envoy:dev"
SUBSTITUTES = "switchboard-substitutes:local"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Left out of the base: documentation, manual pages, translations.
_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
HERE = Path(__file__).resolve().parent


def build_base(env: dict[str, str]) -> None:
    mmdebstrap = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(BASE_PACKAGES)}"]
    mmdebstrap += [f"--dpkgopt=path-exclude={path}" for path in _EXCLUDES]
    mmdebstrap += [SUITE, "-"]
    tar = subprocess.Popen(mmdebstrap, stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        subprocess.run(
            [docker_cli(), "import", "--change", 'CMD ["python3"]', "-", BASE],
            stdin=tar.stdout,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"mmdebstrap exited with {tar.returncode}")


def python_version(env: dict[str, str]) -> str:
    """The base image's Python (its markers decide part of the wheelhouse)."""
    run = subprocess.run(
        [
            docker_cli(),
            "run",
            "--rm",
            "--network",
            "none",
            BASE,
            "python3",
            "-c",
            "import platform; print(platform.python_version())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return run.stdout.strip()


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on loopback (a find-links page for pip); yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def build(
    env: dict[str, str], dockerfile: Path, tag: str, context: Path, wheelhouse_url: str | None
) -> None:
    """``docker build`` on the local base; host networking so RUN steps reach the
    wheelhouse on the host's loopback (and Debian's mirror, for the substitutes)."""
    argv = [docker_cli(), "build", "--quiet", "--network", "host", "--file", str(dockerfile)]
    argv += ["--tag", tag, "--build-arg", f"BASE_IMAGE={BASE}"]
    if wheelhouse_url is not None:
        argv += ["--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={wheelhouse_url}"]
    subprocess.run([*argv, str(context)], env=env, check=True, stdout=subprocess.DEVNULL)


def build_substitutes(env: dict[str, str]) -> None:
    build(env, HERE / "substitutes.Dockerfile", SUBSTITUTES, HERE, None)


def sizes(env: dict[str, str], tags: tuple[str, ...]) -> dict[str, int]:
    """Bytes per image, as ``docker image inspect`` reports them."""
    out = {}
    for tag in tags:
        run = subprocess.run(
            [docker_cli(), "image", "inspect", "--format", "{{.Size}}", tag],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        out[tag] = int(run.stdout.strip())
    return out
