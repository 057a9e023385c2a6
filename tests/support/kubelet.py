"""A ConfigMap volume laid out as the kubelet's AtomicWriter lays it out, for tests that
cannot run a kubelet (kubernetes ``pkg/volume/util/atomic_writer.go``):

    <dir>/..2026_12_06_13_20_00.1234/<key>   the payload, in a timestamped directory
    <dir>/..data -> ..2026_12_06_13_20_00.1234
    <dir>/<key> -> ..data/<key>              one user-visible symlink per key

An update writes a new timestamped directory, points a ``..data_tmp`` symlink at it and
renames that over ``..data`` (the one atomic step), then removes the old directory and
the links of keys that are gone.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


def write_configmap_volume(directory: Path, data: Mapping[str, str]) -> Path:
    """Write (or update) ``directory`` with ``data``; returns the new payload directory."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / DATA
    old = os.readlink(link) if link.is_symlink() else None
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    payload = directory / f"..{stamp}.{time.monotonic_ns() % 10**9}"
    payload.mkdir()
    for key, value in data.items():
        (payload / key).write_text(value)
    for key in data:
        visible = directory / key
        if not visible.is_symlink():
            visible.symlink_to(f"{DATA}/{key}")
    tmp = directory / f"{DATA}_tmp"
    tmp.symlink_to(payload.name)
    os.rename(tmp, link)
    if old is not None:
        shutil.rmtree(directory / old)
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in data:
            entry.unlink()
    return payload
