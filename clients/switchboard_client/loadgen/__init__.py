"""``switchboard load``: an open-loop load generator for the mesh (extra ``load``).

:func:`run_load` fires the shots of a :class:`LoadPlan` at their scheduled instants
through any ``send(shot, timeout_s) -> Outcome`` and measures each latency from its
scheduled start into HDR histograms, so a stalled server cannot hide behind a stalled
generator (no coordinated omission). :class:`ChatDriver` sends Chat turns over gRPC::

    async with ChatDriver(ConnectConfig("127.0.0.1:8080")) as driver:
        report = await run_load(LoadPlan(rate=40, duration_s=30), driver.send)

The plan, the schedule and the report import no gRPC; only :mod:`.grpc_driver` does.
"""

from switchboard_client.loadgen.grpc_driver import ChatDriver
from switchboard_client.loadgen.plan import BUILTIN_MESSAGES, LoadPlan, Shot, read_messages
from switchboard_client.loadgen.report import Outcome, Recorder
from switchboard_client.loadgen.runner import progress_line, run_load

__all__ = [
    "BUILTIN_MESSAGES",
    "ChatDriver",
    "LoadPlan",
    "Outcome",
    "Recorder",
    "Shot",
    "progress_line",
    "read_messages",
    "run_load",
]
