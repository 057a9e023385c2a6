"""What a load run sends and when: :class:`LoadPlan` and its open-loop :func:`schedule`.

The schedule is fixed before the run starts: shot ``i`` is due at ``offset_s`` after the
start whatever happened to earlier shots (open loop). Its latency is later measured
from that instant, so a stalled server shows up in the figures instead of silently
slowing the generator down (no coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Arrival = Literal["constant", "poisson"]

MAX_RATE = 10_000.0
MAX_DURATION_S = 3600.0
MAX_REQUESTS = 1_000_000
MAX_CONCURRENCY = 10_000
MAX_SESSIONS = 100_000

# Short requests in the style of the HWU64 intents the classifier is trained on, plus
# questions the knowledge base answers: a realistic mix without shipping a data set.
BUILTIN_MESSAGES: tuple[str, ...] = (
    "wake me up at seven tomorrow morning",
    "set an alarm for six thirty",
    "turn the volume down a little",
    "what is on my calendar for friday",
    "remind me about the dentist at three",
    "how do I make a pancake batter",
    "what time is it in tokyo",
    "send an email to my boss saying I am late",
    "turn off the lights in the kitchen",
    "add milk to my shopping list",
    "play some jazz",
    "what are the headlines today",
    "play the next episode of my podcast",
    "what is the capital of australia",
    "recommend a good thriller movie",
    "post a tweet about the weather",
    "order a pizza for delivery",
    "when is the next train to london",
    "will it rain tomorrow",
    "tell me a joke",
    "thank you that was great",
    "stop",
    "What is Switchboard and how does a chat message flow through it?",
    "how does switchboard retry a failed call?",
    "what did I ask you to wake me at?",
)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """A run: ``rate`` requests/s for ``duration_s``, at most ``concurrency`` in flight.

    ``timeout_s`` is each request's deadline counted from its scheduled start: a request
    still waiting for a free slot by then is recorded as ``DEADLINE_EXCEEDED`` unsent.
    """

    rate: float
    duration_s: float
    concurrency: int = 64
    sessions: int = 16
    timeout_s: float = 5.0
    messages: tuple[str, ...] = BUILTIN_MESSAGES
    arrival: Arrival = "constant"
    seed: int = 0
    session_prefix: str = "load"
    max_requests: int = field(default=MAX_REQUESTS)

    def __post_init__(self) -> None:
        checks = (
            ("rate", 0 < self.rate <= MAX_RATE, f"in (0, {MAX_RATE:g}]"),
            ("duration_s", 0 < self.duration_s <= MAX_DURATION_S, f"in (0, {MAX_DURATION_S:g}]"),
            ("concurrency", 1 <= self.concurrency <= MAX_CONCURRENCY, f"1..{MAX_CONCURRENCY}"),
            ("sessions", 1 <= self.sessions <= MAX_SESSIONS, f"1..{MAX_SESSIONS}"),
            ("timeout_s", 0 < self.timeout_s <= 600, "in (0, 600]"),
            ("messages", len(self.messages) > 0, "not empty"),
            ("max_requests", 1 <= self.max_requests <= MAX_REQUESTS, f"1..{MAX_REQUESTS}"),
        )
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"LoadPlan.{name} must be {want}")
        if self.arrival not in ("constant", "poisson"):
            raise ValueError("LoadPlan.arrival must be 'constant' or 'poisson'")

    @property
    def total(self) -> int:
        """How many requests the run schedules."""
        return min(self.max_requests, max(1, round(self.rate * self.duration_s)))


@dataclass(frozen=True, slots=True)
class Shot:
    """One scheduled request."""

    seq: int
    offset_s: float
    session_id: str
    message: str


def schedule(plan: LoadPlan) -> Iterator[Shot]:
    """The shots of ``plan`` in time order (deterministic for a given ``seed``).

    Sessions take turns (shot ``i`` goes to session ``i % sessions``), so each session's
    turns are spread over the run; messages are drawn from the mix with the seed.
    """
    rng = random.Random(plan.seed)
    interval = 1.0 / plan.rate
    offset = 0.0
    for seq in range(plan.total):
        if plan.arrival == "poisson" and seq:
            offset += rng.expovariate(plan.rate)
        else:
            offset = seq * interval
        yield Shot(
            seq=seq,
            offset_s=offset,
            session_id=f"{plan.session_prefix}-{seq % plan.sessions}",
            message=rng.choice(plan.messages),
        )


def read_messages(path: Path) -> tuple[str, ...]:
    """A message mix from a text file: one message a line; blank and ``#`` lines skipped."""
    lines: Sequence[str] = path.read_text(encoding="utf-8").splitlines()
    found = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if not found:
        raise ValueError(f"{path}: no messages (one a line; '#' starts a comment)")
    return found
