"""A composer backed by an OpenAI-compatible chat-completions API (off by default).

``POST {base_url}/chat/completions`` with ``{"model", "messages", "max_tokens",
"temperature"}``; the reply is ``choices[0].message.content``. Passages are given to
the model with their ids; ids the reply mentions count as cited. Any failure raises
:class:`DependencyFailed`, so the pipeline falls back to the rule composer and marks
the turn degraded (``COMPOSER``).

Each call waits at most ``min(timeout_s, request.budget_s)`` in all (connect, send and
read together): when the caller's remaining deadline is the shorter, running out of it
raises :class:`CallerDeadline`, which the circuit breaker does not hold against the LLM.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from switchboard_server.orchestration.ports import (
    DEADLINE_EXCEEDED,
    CallerDeadline,
    DependencyFailed,
)
from switchboard_server.orchestration.values import ComposeInput, Composition

log = structlog.get_logger(__name__)

SYSTEM_PROMPT = (
    "You are Switchboard, a concise assistant. Answer the user's message in at most three "
    "sentences. When a passage below answers it, use it and cite its id in square brackets, "
    "e.g. [doc-1#0]. The classifier's verdict is given as a hint."
)


@dataclass(frozen=True, slots=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str = field(repr=False)  # never in a log line or a traceback's locals
    timeout_s: float
    max_tokens: int
    temperature: float


class LLMComposer:
    """Calls the chat-completions endpoint; owns its HTTP client (``aclose`` when done)."""

    def __init__(self, config: LLMConfig, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = client or httpx.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=config.timeout_s,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def payload(self, request: ComposeInput) -> dict[str, Any]:
        intent = request.intent
        lines = [f"Classifier verdict: {intent.intent} (confidence {intent.confidence:.2f})."]
        for source in request.retrieved.sources:
            lines.append(f"[{source.id}] {source.title}: {source.content}".strip())
        return {
            "model": self._config.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT + "\n\n" + "\n".join(lines)},
                {"role": "user", "content": request.message},
            ],
            "max_tokens": self._config.max_tokens,
            "temperature": self._config.temperature,
        }

    async def compose(self, request: ComposeInput) -> Composition:
        timeout_s, bound_by_caller = self._config.timeout_s, False
        if request.budget_s is not None and request.budget_s < timeout_s:
            timeout_s, bound_by_caller = request.budget_s, True
        if timeout_s <= 0:
            raise CallerDeadline()
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.post(
                    "chat/completions", json=self.payload(request), timeout=timeout_s
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            if bound_by_caller:
                raise CallerDeadline() from exc
            raise DependencyFailed(DEADLINE_EXCEEDED) from exc
        except httpx.HTTPError as exc:
            raise DependencyFailed("UNAVAILABLE") from exc
        if response.status_code == 429:
            raise DependencyFailed("RESOURCE_EXHAUSTED")
        if response.status_code >= 400:
            log.warning("llm.http_error", status=response.status_code)
            raise DependencyFailed("UNAVAILABLE" if response.status_code >= 500 else "REJECTED")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise DependencyFailed("BAD_RESPONSE") from exc
        if not isinstance(content, str) or not content.strip():
            raise DependencyFailed("BAD_RESPONSE")
        reply = content.strip()
        cited = frozenset(s.id for s in request.retrieved.sources if f"[{s.id}]" in reply)
        return Composition(reply, cited)
