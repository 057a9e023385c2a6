"""The default composer: intent-aware responders, grounded in retrieved passages.

A :class:`ResponderRegistry` maps intent paths to responders with a fallback
(exact path, then ``l1/l2``, then ``l1``, then the default). Before the registry,
:class:`RuleComposer` applies three rules:

1. a question about Switchboard is always answered from the best passage, cited by id;
2. an out-of-scope verdict gets a clear "not sure" reply offering the top alternatives;
3. a question (``qa/*``, ``general/quirky``, ``general/explain`` or any question-like
   message) is answered from the best knowledge passage when one is relevant enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from switchboard_server.orchestration.values import (
    ComposeInput,
    Composition,
    Source,
    SourceKind,
)

Responder = Callable[[ComposeInput], Composition]

QUESTION_INTENTS = ("qa/", "general/quirky", "general/explain")
_QUESTION_START = re.compile(
    r"^\s*(what|who|whom|whose|when|where|why|how|which|is|are|am|can|could|does|do|did|"
    r"should|would|will|was|were|has|have|tell me|explain|define|describe)\b",
    re.IGNORECASE,
)
_ABOUT_SWITCHBOARD = re.compile(r"\bswitchboard\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SNIPPET_CHARS = 320

DOMAIN_REPLIES: dict[str, str] = {
    "alarm": "Sure, I'll take care of your alarm ({action}).",
    "audio": "Okay, adjusting the audio ({action}).",
    "calendar": "Got it, I'll handle that in your calendar ({action}).",
    "cooking": "Let's get cooking ({action}).",
    "datetime": "Let me check the date and time for you ({action}).",
    "email": "Okay, I'll handle that email request ({action}).",
    "general": "Understood ({action}).",
    "iot": "Okay, sending that to your smart home ({action}).",
    "lists": "Sure, I'll update your lists ({action}).",
    "music": "Okay, on it with your music ({action}).",
    "news": "Here's what I can do with the news ({action}).",
    "play": "Starting playback ({action}).",
    "qa": "Let me look that up ({action}).",
    "recommendation": "Here's a recommendation coming up ({action}).",
    "social": "Okay, I'll handle that on social media ({action}).",
    "takeaway": "Sure, about your takeaway ({action}).",
    "transport": "Let me check transport for you ({action}).",
    "weather": "Let me check the weather for you ({action}).",
}


def is_question(message: str) -> bool:
    """A question mark, or an interrogative opening word."""
    return message.rstrip().endswith("?") or bool(_QUESTION_START.match(message))


def about_switchboard(message: str) -> bool:
    return bool(_ABOUT_SWITCHBOARD.search(message))


def best_passage(sources: Iterable[Source], min_relevance: float) -> Source | None:
    """The most relevant knowledge passage at or above ``min_relevance``."""
    passages = [
        s for s in sources if s.kind is SourceKind.KNOWLEDGE and s.relevance >= min_relevance
    ]
    return max(passages, key=lambda s: s.relevance, default=None)


def snippet(text: str, limit: int = MAX_SNIPPET_CHARS) -> str:
    """The leading sentences of ``text`` that fit in ``limit`` characters."""
    text = " ".join(text.split())
    out = ""
    for sentence in _SENTENCE_END.split(text):
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"


def humanize(intent: str) -> str:
    return intent.replace("/", " ").replace("_", " ")


def grounded(passage: Source) -> Composition:
    """An answer quoting ``passage`` and citing its id."""
    where = f" ({passage.title})" if passage.title else ""
    reply = f"Here is what I found{where}: {snippet(passage.content)} [{passage.id}]"
    return Composition(reply, frozenset({passage.id}))


def domain_reply(request: ComposeInput) -> Composition:
    """The registry's default: a short acknowledgement by domain."""
    intent = request.intent
    template = DOMAIN_REPLIES.get(intent.l1 or intent.parts[0], "Okay ({action}).")
    return Composition(template.format(action=humanize(intent.intent)))


def fallback_reply(request: ComposeInput) -> Composition:
    """Classification was unavailable: say so plainly."""
    return Composition(
        "I can't work out exactly what you need right now, but I've noted your message. "
        "Could you try again in a moment?"
    )


@dataclass(frozen=True, slots=True)
class _Static:
    text: str

    def __call__(self, request: ComposeInput) -> Composition:
        return Composition(self.text)


class ResponderRegistry:
    """Responders keyed by intent path; lookup falls back l1/l2/l3 → l1/l2 → l1 → default."""

    def __init__(self, default: Responder = domain_reply) -> None:
        self._default = default
        self._by_path: dict[str, Responder] = {}

    def register(self, path: str, responder: Responder) -> None:
        self._by_path[path] = responder

    def lookup(self, intent: str) -> Responder:
        parts = intent.split("/")
        for size in range(len(parts), 0, -1):
            found = self._by_path.get("/".join(parts[:size]))
            if found is not None:
                return found
        return self._default


def default_registry(fallback_intent: str) -> ResponderRegistry:
    """The built-in responders."""
    registry = ResponderRegistry()
    registry.register(fallback_intent, fallback_reply)
    registry.register(
        "general/joke", _Static("Why did the packet cross the mesh? To get to the other sidecar.")
    )
    registry.register("general/praise", _Static("Thank you, glad I could help!"))
    registry.register("general/affirm", _Static("Great, consider it done."))
    registry.register("general/negate", _Static("Okay, I won't do that."))
    registry.register("general/commandstop", _Static("Stopping now."))
    registry.register("general/repeat", _Static("Sure, let me say that again."))
    return registry


class RuleComposer:
    """Intent-aware, grounded replies without a model; never fails."""

    def __init__(
        self, registry: ResponderRegistry, *, min_relevance: float, alternatives: int
    ) -> None:
        self._registry = registry
        self._min_relevance = min_relevance
        self._alternatives = alternatives

    async def compose(self, request: ComposeInput) -> Composition:
        return self.compose_now(request)

    def compose_now(self, request: ComposeInput) -> Composition:
        intent, message = request.intent, request.message
        passage = best_passage(request.retrieved.sources, self._min_relevance)
        if about_switchboard(message):
            if passage is not None:
                return grounded(passage)
            return Composition(
                "Switchboard is a gRPC service mesh for conversational assistants, but I "
                "found nothing more specific in its knowledge base."
            )
        if intent.out_of_scope:
            return self._out_of_scope(request)
        asks = intent.intent.startswith(QUESTION_INTENTS) or is_question(message)
        if asks and passage is not None:
            return grounded(passage)
        return self._registry.lookup(intent.intent)(request)

    def _out_of_scope(self, request: ComposeInput) -> Composition:
        options = [humanize(a.intent) for a in request.intent.alternatives[: self._alternatives]]
        reply = "I'm not sure what you mean."
        if options:
            reply += " Did you mean: " + "; ".join(options) + "?"
        else:
            reply += " Could you rephrase that?"
        return Composition(reply)
