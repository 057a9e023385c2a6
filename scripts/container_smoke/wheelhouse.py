"""A wheelhouse of requirements.lock for the image builds, made on the host.

pip inside a container here cannot reach the package index (it does not trust the
index's certificate), so the host fills a directory with every locked wheel, checked
against the lock's hashes, and serves it to ``docker build`` over HTTP on loopback
(``--build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://127.0.0.1:PORT/``).

The host's Python decides the lock's markers for ``pip wheel``; the image's Python may
be another patch release (Debian bookworm's 3.11.2 needs ``async-timeout``, which a
3.11.7 host skips), so entries whose marker holds only for the image's Python are
downloaded too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker

_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-\[\],]+)==(?P<version>\S+)(?:\s*;\s*(?P<marker>.+))?$"
)


def lock_entries(lock: Path) -> list[tuple[str, str | None]]:
    """``(requirement block, marker)`` per locked package: the pin and its hash lines."""
    blocks: list[tuple[str, str | None]] = []
    current: list[str] = []
    for raw in lock.read_text().splitlines():
        line = raw.strip()
        if current:
            current.append(line)
            if not line.endswith("\\"):
                blocks.append(_block(current))
                current = []
            continue
        if not line or line.startswith("#") or raw.startswith(" "):
            continue
        current = [line]
        if not line.endswith("\\"):
            blocks.append(_block(current))
            current = []
    return blocks


def _block(lines: list[str]) -> tuple[str, str | None]:
    """The block without its marker (pip would evaluate it for this Python), and the marker."""
    head = lines[0].rstrip("\\").strip()
    match = _ENTRY.match(head)
    if match is None:
        raise ValueError(f"unexpected line in the lock: {head!r}")
    pin = f"{match.group('name')}=={match.group('version')}"
    rest = [" \\"] if lines[0].endswith("\\") else []
    return "\n".join([pin + "".join(rest), *lines[1:]]), match.group("marker")


def only_for(lock: Path, python_full_version: str) -> list[str]:
    """Blocks whose marker holds for ``python_full_version`` but not for this Python."""
    target = {"python_full_version": python_full_version}
    target["python_version"] = ".".join(python_full_version.split(".")[:2])
    extra = []
    for block, marker in lock_entries(lock):
        if marker is None:
            continue
        parsed = Marker(marker)
        if parsed.evaluate(target) and not parsed.evaluate():
            extra.append(block)
    return extra


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "-qq"]


def build_host(lock: Path, out: Path) -> None:
    """Every wheel of ``lock`` whose marker holds for this Python, hash-checked."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*_pip(), "wheel", "--require-hashes", "--wheel-dir", str(out), "-r", str(lock)],
        check=True,
    )


def add_for(lock: Path, out: Path, python_full_version: str) -> int:
    """Add the wheels only the image's Python needs; returns the wheelhouse's count."""
    extra = only_for(lock, python_full_version)
    if extra:
        extra_file = out / "extra-requirements.txt"
        extra_file.write_text("\n".join(extra) + "\n")
        download = ["download", "--no-deps", "--require-hashes", "--only-binary=:all:"]
        subprocess.run([*_pip(), *download, "--dest", str(out), "-r", str(extra_file)], check=True)
        extra_file.unlink()
    return len(list(out.glob("*.whl")))
