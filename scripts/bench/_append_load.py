"""AppendMemory load generator: a gRPC client in its own process, optionally niced.

The context benchmark runs it in alternating windows, at ``nice 10`` and at the
server's priority. On a small box the generator competes with the server it measures
for the same cores (a Python client needs a good share of the CPU per call that the
server does); at nice 10 the server gets a core first whenever both are runnable, as
it would with the client on another machine.

    python -m scripts.bench._append_load PORT APPENDS CONCURRENCY FIRST [--nice N]

prints the entries acknowledged per second (one entry per call) as one JSON number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc

SESSIONS = 1_000
WARMUP = 200


async def append_rate(
    stub: pb_grpc.ContextServiceAsyncStub,
    appends: int,
    concurrency: int,
    *,
    first: int = 0,
    batch: int = 1,
) -> float:
    """Entries appended per second, ``batch`` entries per AppendMemory call and
    ``concurrency`` calls in flight; call ``i`` goes to session ``i % SESSIONS``."""
    queue = list(range(first, first + appends))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await stub.AppendMemory(
                pb.AppendMemoryRequest(
                    session_id=f"s{i % SESSIONS}",
                    entries=[
                        pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content=f"turn {i}.{j}")
                        for j in range(batch)
                    ],
                ),
                timeout=10,
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return appends * batch / (time.perf_counter() - started)


async def _main(port: int, appends: int, concurrency: int, first: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ContextServiceStub(channel)
        await append_rate(stub, WARMUP, concurrency, first=first)  # connect, warm up
        return await append_rate(stub, appends, concurrency, first=first + WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("appends", type=int)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("first", type=int, help="number of the first call (its session)")
    parser.add_argument("--nice", type=int, default=0, help="niceness to add first")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)  # before gRPC starts its threads, which inherit it
    rate = asyncio.run(_main(args.port, args.appends, args.concurrency, args.first))
    print(json.dumps(round(rate, 1)))


if __name__ == "__main__":
    main()
