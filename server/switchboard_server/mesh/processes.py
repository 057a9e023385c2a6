"""Child processes of the runner: spawned in their own process group, tied to our life.

Every child gets its own session (so a signal to its group reaches anything it forks)
and ``PR_SET_PDEATHSIG`` (so the kernel sends it SIGTERM if the runner dies without
cleaning up: no orphans). Output is read line by line and handed to a sink with the
child's name, which the runner prints as one merged, prefixed log.

The death signal is set by util-linux's ``setpriv --pdeathsig TERM``, which then execs
the child's command (same process, same pid), not by a ``preexec_fn``: that makes
Python ``fork()`` a runner whose gRPC threads are busy (its health probes), gRPC's fork
handlers run, and about one child in a thousand died of SIGABRT or SIGSEGV before it
could exec (a ``switchboard up`` test saw an app "exit" with -11). Without it the
interpreter spawns with ``vfork``. ``Child.start`` returns once ``setpriv`` has exec'd
the command, i.e. with the death signal set, as the ``preexec_fn`` did. Where
``setpriv`` is missing, children start without the death signal (logged for each start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

LineSink = Callable[[str, str], None]  # (child name, line)


def _death_signal_prefix() -> list[str]:
    """What to put before a command so that the kernel sends it SIGTERM when the
    runner dies (nothing where ``setpriv`` is missing)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("child.no_death_signal", reason="setpriv (util-linux) not found")
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def command_of(pid: int) -> bytes | None:
    """The first word of process ``pid``'s command line (``/proc``), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited and awaits its parent's wait (``/proc`` state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0] == b"Z"


async def _until_exec(pid: int, wrapper: str, timeout_s: float = 5.0) -> None:
    """Return once process ``pid`` no longer runs ``wrapper`` (its command line's first
    word): ``setpriv`` has set the death signal and exec'd the command, or it exited. A
    runner killed before that leaves an orphan (seen when a test killed the runner
    right after a start)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        command = command_of(pid)
        # An empty command line is a process between two images (mid-exec) or a zombie.
        if command is None or (command and command != wrapper.encode()) or _is_zombie(pid):
            return
        await asyncio.sleep(0.001)
    log.warning("child.death_signal_unconfirmed", pid=pid, waited_s=timeout_s)


@dataclass(frozen=True)
class ChildSpec:
    """What to run: a name, a role (app, sidecar, edge, traces) and its command line."""

    name: str
    role: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


class Child:
    """One running (or restartable) child process."""

    def __init__(self, spec: ChildSpec, sink: LineSink) -> None:
        self.spec = spec
        self.sink = sink
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.last_output = ""  # its latest non-blank output line (why it exited, often)
        self.last_exit_code: int | None = None  # set by whoever waits for its exit
        self._reader: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        prefix = _death_signal_prefix()
        self.proc = await asyncio.create_subprocess_exec(
            *prefix,
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self._reader = asyncio.create_task(self._pump(self.proc))
        if prefix:  # return with the death signal set, as a preexec_fn would
            await _until_exec(self.proc.pid, prefix[0])
        log.info("child.started", child=self.name, role=self.spec.role, pid=self.proc.pid)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if text.strip():
                self.last_output = text
            self.sink(self.name, text)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 2.0)
        return code

    def signal(self, sig: signal.Signals) -> None:
        """Signal the child's whole process group."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                log.warning("child.kill", child=self.name, pid=self.proc.pid)
                self.signal(signal.SIGKILL)
        return await self.wait()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child nobody has reaped yet (zombie) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
