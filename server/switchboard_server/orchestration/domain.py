"""The chat pipeline: classify and retrieve concurrently, compose, remember, respond.

Deadlines: every outbound call gets ``min(stage timeout, caller's time left - margin)``;
the composer gets the time left less ``compose_reserve_s`` (kept for remembering and
answering), and a composer that fails or runs out of it falls back to the rule composer.
A dependency that fails degrades the turn (named in ``degraded``); only bad input
(checked before the pipeline runs) or the caller's own deadline running out fails it.

Writes: a turn is committed (conversation log, memory) only if at least
``commit_reserve_s`` of the caller's time is left to write it and answer; otherwise it
fails with DEADLINE_EXCEEDED and nothing is written. A turn with a request_id is
recorded with its answer in the log's transaction, then written to memory under a
request_id derived from the turn's; a repeat of the key (e.g. after a
DEADLINE_EXCEEDED that came after the commit) gets that answer, writes no second turn,
and sends the same memory write again (a no-op if the first landed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from opentelemetry import trace

from switchboard_server.errors import DeadlineExceeded
from switchboard_server.idempotency import KeyedGate, RequestKey
from switchboard_server.observability.tracing import confidence_bucket
from switchboard_server.orchestration.outcome import result_from_json, result_to_json
from switchboard_server.orchestration.ports import (
    DEADLINE_EXCEEDED,
    Classifier,
    Composer,
    ContextPort,
    ConversationLog,
    DependencyFailed,
    TurnAlreadyRecorded,
)
from switchboard_server.orchestration.turn_run import EventSink, TurnRun
from switchboard_server.orchestration.values import (
    ChatOptions,
    ChatResult,
    ComposeInput,
    Composition,
    Degradation,
    Dependency,
    Intent,
    MemoryEntry,
    Retrieved,
    Stage,
    StageStatus,
    StageTiming,
    Turn,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The numbers the pipeline needs (taken from OrchestrationSettings by the module)."""

    margin_s: float = 0.010
    classify_timeout_s: float = 1.0
    context_timeout_s: float = 1.0
    memory_timeout_s: float = 2.0
    compose_reserve_s: float = 0.1
    max_context_results: int = 5
    max_context_chars: int = 2000
    top_k: int = 3
    fallback_intent: str = "general/fallback"
    commit_reserve_s: float = 0.05


class ChatPipeline:
    """One chat turn end to end; collaborators come in through the constructor."""

    def __init__(
        self,
        classifier: Classifier,
        context: ContextPort,
        composer: Composer,
        conversation_log: ConversationLog,
        config: PipelineConfig,
        *,
        fallback_composer: Composer | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        provider = tracer_provider or trace.NoOpTracerProvider()
        self._tracer = provider.get_tracer("switchboard.orchestration")
        self._classifier = classifier
        self._context = context
        self._composer = composer
        self._fallback_composer = fallback_composer
        self._log = conversation_log
        self._config = config
        self._gate = KeyedGate()

    async def run(
        self,
        message: str,
        session_id: str,
        options: ChatOptions,
        *,
        correlation_id: str,
        deadline: float | None = None,
        on_event: EventSink | None = None,
        key: RequestKey | None = None,
    ) -> ChatResult:
        """Answer ``message``; ``deadline`` is a ``time.monotonic()`` instant or None.

        With a ``key``, one call per key runs at a time in this process: a repeat
        waits for the first, then gets its recorded answer (or runs, if the first
        committed nothing). A duplicate running elsewhere (another replica) that
        commits first makes the log refuse this one's turn; this one then answers
        with the recorded turn too."""
        if key is None:
            return await self._answer(
                message, session_id, options, correlation_id, deadline, on_event, None
            )
        async with self._gate.hold(key.request_id):
            prior = await self._log.replay(key)
            if prior is None:
                try:
                    return await self._answer(
                        message, session_id, options, correlation_id, deadline, on_event, key
                    )
                except TurnAlreadyRecorded as recorded:  # a duplicate elsewhere came first
                    prior = recorded.outcome
            log.info("chat.replayed")
            result = result_from_json(prior)
            if not options.skip_memory:
                await self._complete_memory(message, result, key, deadline)
            return result

    async def _answer(
        self,
        message: str,
        session_id: str,
        options: ChatOptions,
        correlation_id: str,
        deadline: float | None,
        on_event: EventSink | None,
        key: RequestKey | None,
    ) -> ChatResult:
        cfg = self._config
        turn = TurnRun(deadline, cfg.margin_s, on_event, self._tracer)
        turn.budget(0.0)  # fail fast if the caller's time is already gone
        max_results = options.max_context_results or cfg.max_context_results

        async def classify(budget_s: float) -> Intent:
            verdict = await self._classifier.classify(
                message,
                session_id,
                threshold=options.confidence_threshold,
                top_k=cfg.top_k,
                budget_s=budget_s,
            )
            trace.get_current_span().set_attributes(
                {
                    "intent.l1": verdict.l1,
                    "intent.confidence_bucket": confidence_bucket(verdict.confidence),
                    "intent.out_of_scope": verdict.out_of_scope,
                }
            )
            return verdict

        async def retrieve(budget_s: float) -> Retrieved:
            found = await self._context.get_context(
                message,
                session_id,
                max_results=max_results,
                max_chars=cfg.max_context_chars,
                budget_s=budget_s,
            )
            trace.get_current_span().set_attribute("context.sources", len(found.sources))
            return found

        intent, retrieved = await both(
            turn.stage(Stage.CLASSIFY, Dependency.CLASSIFICATION, cfg.classify_timeout_s, classify),
            turn.stage(Stage.RETRIEVE, Dependency.CONTEXT, cfg.context_timeout_s, retrieve),
        )
        if intent is None:
            intent = Intent(
                intent=cfg.fallback_intent,
                confidence=0.0,
                l1=cfg.fallback_intent.split("/")[0],
                fallback=True,
            )
        retrieved = retrieved or Retrieved()
        with self._tracer.start_as_current_span("chat.compose") as span:
            composition = await self._compose(
                turn, ComposeInput(message, intent, retrieved, session_id)
            )
            span.set_attribute("compose.cited", len(composition.cited))

        def answer(turn_index: int) -> ChatResult:
            return ChatResult(
                reply=composition.reply,
                intent=intent,
                sources=retrieved.sources,
                cited=composition.cited,
                degraded=tuple(turn.degraded),
                timings=tuple(turn.timings),
                correlation_id=correlation_id,
                session_id=session_id,
                turn_index=turn_index,
                total_ms=turn.elapsed_ms(),
            )

        self._check_commit_time(turn)
        with self._tracer.start_as_current_span("chat.remember"):
            turn_index = await self._remember(
                turn, message, session_id, options, intent, composition, correlation_id,
                key, answer(-1),
            )  # fmt: skip
        trace.get_current_span().set_attributes(
            {
                "chat.intent.l1": intent.l1,
                "chat.intent.confidence_bucket": confidence_bucket(intent.confidence),
                "chat.intent.out_of_scope": intent.out_of_scope,
                "chat.intent.fallback": intent.fallback,
                "chat.sources": len(retrieved.sources),
                "chat.degraded": sorted(d.dependency.name for d in turn.degraded),
            }
        )
        return answer(turn_index)

    async def _complete_memory(
        self, message: str, result: ChatResult, key: RequestKey, deadline: float | None
    ) -> None:
        """Send a replayed turn's memory write again, under the same derived request_id:
        the context service applies it if the first attempt's never landed (e.g. it was
        cut by the caller's deadline) and otherwise returns its first outcome."""
        turn = TurnRun(deadline, self._config.margin_s, None, self._tracer)
        try:
            budget, _ = turn.budget(self._config.memory_timeout_s)
            await self._context.append_memory(
                result.session_id,
                memory_entries(message, result.reply, result.intent),
                budget_s=budget,
                request_id=key.derived_id("memory"),
            )
        except (DependencyFailed, DeadlineExceeded) as exc:
            log.warning("chat.replay_memory_failed", error=type(exc).__name__)

    def _check_commit_time(self, turn: TurnRun) -> None:
        """Fail the turn, before anything is written, unless at least ``commit_reserve_s``
        of the caller's time is left to write it and answer."""
        if turn.deadline is None:
            return
        left = turn.deadline - time.monotonic() - turn.margin_s
        if left < self._config.commit_reserve_s:
            raise DeadlineExceeded("too little of the deadline was left to commit the turn")

    async def _compose(self, turn: TurnRun, request: ComposeInput) -> Composition:
        turn.emit(Stage.COMPOSE, StageStatus.STARTED)
        begun = time.monotonic()
        request = replace(request, budget_s=turn.left_s(self._config.compose_reserve_s))
        try:
            composition = await self._composer.compose(request)
            status = StageStatus.FINISHED
        except DependencyFailed as exc:
            if self._fallback_composer is None:
                raise
            turn.degraded.append(Degradation(Dependency.COMPOSER, exc.reason))
            log.warning("chat.composer_failed", reason=exc.reason)
            composition = await self._fallback_composer.compose(request)
            status = StageStatus.FAILED
        duration = (time.monotonic() - begun) * 1000.0
        turn.timings.append(StageTiming(Stage.COMPOSE, duration))
        turn.emit(Stage.COMPOSE, status, duration)
        return composition

    async def _remember(
        self,
        turn: TurnRun,
        message: str,
        session_id: str,
        options: ChatOptions,
        intent: Intent,
        composition: Composition,
        correlation_id: str,
        key: RequestKey | None,
        committed: ChatResult,
    ) -> int:
        """Write memory (unless skipped) and the conversation log.

        Without a key, both at once. With a ``key``, the log first: it records
        ``committed`` (the answer as known before the writes, with the turn's index) in
        the turn's transaction, which is the turn's commit point; then memory, under a
        request_id derived from the key. So memory never holds a turn the log lacks,
        and a replay of the key can complete a memory write that was cut off with the
        very same request."""
        turn.emit(Stage.REMEMBER, StageStatus.STARTED)
        begun = time.monotonic()
        failures_before = len(turn.degraded)
        record = Turn(
            index=-1,
            user_message=message,
            reply=composition.reply,
            intent=intent,
            timestamp=datetime.now(UTC),
            correlation_id=correlation_id,
        )

        def outcome(index: int) -> str:
            return result_to_json(replace(committed, turn_index=index))

        async def write_log() -> int:
            try:
                return await self._log.append(session_id, record, key=key, outcome=outcome)
            except DependencyFailed as exc:
                turn.degraded.append(Degradation(Dependency.CONVERSATION_LOG, exc.reason))
                log.warning("chat.conversation_log_failed", reason=exc.reason)
                return -1

        async def write_memory() -> None:
            if options.skip_memory:
                return
            entries = memory_entries(message, composition.reply, intent)
            budget, bound_by_caller = turn.budget(self._config.memory_timeout_s)
            try:
                await self._context.append_memory(
                    session_id,
                    entries,
                    budget_s=budget,
                    request_id=key.derived_id("memory") if key is not None else "",
                )
            except DependencyFailed as exc:
                if exc.reason == DEADLINE_EXCEEDED and bound_by_caller:
                    raise DeadlineExceeded("the deadline expired while writing memory") from exc
                turn.degraded.append(Degradation(Dependency.MEMORY, exc.reason))
                log.warning("chat.memory_write_failed", reason=exc.reason)

        if key is None:
            index, _ = await both(write_log(), write_memory())
        else:
            index = await write_log()
            await write_memory()
        duration = (time.monotonic() - begun) * 1000.0
        turn.timings.append(StageTiming(Stage.REMEMBER, duration))
        failed = len(turn.degraded) > failures_before
        turn.emit(Stage.REMEMBER, StageStatus.FAILED if failed else StageStatus.FINISHED, duration)
        return index


async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Run two awaitables concurrently; if one fails (or we are cancelled) cancel the other."""
    try:
        async with asyncio.TaskGroup() as group:
            a = group.create_task(_run(first))
            b = group.create_task(_run(second))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return a.result(), b.result()


async def _run(awaitable: Awaitable[T]) -> T:
    return await awaitable


def memory_entries(message: str, reply: str, intent: Intent) -> list[MemoryEntry]:
    """Working memory gets both sides of the turn; episodic memory gets the exchange."""
    meta = {"intent": intent.intent}
    return [
        MemoryEntry("working", message, {**meta, "role": "user"}),
        MemoryEntry("working", reply, {**meta, "role": "assistant"}),
        MemoryEntry("episodic", f"User: {message}\nAssistant: {reply}", meta),
    ]
