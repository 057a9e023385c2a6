"""The default rule composer and its responder registry."""

from __future__ import annotations

from switchboard_server.orchestration.composer import (
    ResponderRegistry,
    RuleComposer,
    default_registry,
    is_question,
    snippet,
)
from switchboard_server.orchestration.values import (
    Alternative,
    ComposeInput,
    Composition,
    Intent,
    Retrieved,
    Source,
    SourceKind,
)
from tests.support.orchestration import PASSAGE

MEMORY = Source(SourceKind.MEMORY, "m-1", "User: I like jazz", 0.9)


def compose(message: str, intent: Intent, *sources: Source) -> Composition:
    composer = RuleComposer(default_registry("general/fallback"), min_relevance=0.1, alternatives=2)
    return composer.compose_now(ComposeInput(message, intent, Retrieved(tuple(sources))))


def test_question_about_switchboard_cites_the_best_passage_even_out_of_scope() -> None:
    weaker = Source(SourceKind.KNOWLEDGE, "other#1", "Something else.", 0.3)
    oos = Intent("oos", 0.1, out_of_scope=True)
    result = compose("How does Switchboard route a message?", oos, weaker, MEMORY, PASSAGE)
    assert result.cited == {PASSAGE.id}
    assert f"[{PASSAGE.id}]" in result.reply
    assert "gRPC service mesh" in result.reply


def test_qa_intent_is_grounded_in_a_passage() -> None:
    result = compose("capital of france", Intent("qa/factoid", 0.8, l1="qa"), PASSAGE)
    assert result.cited == {PASSAGE.id}


def test_question_like_message_is_grounded_whatever_the_intent() -> None:
    result = compose("what time is it?", Intent("datetime/query", 0.8, l1="datetime"), PASSAGE)
    assert result.cited == {PASSAGE.id}


def test_command_is_answered_by_its_domain_responder_without_citation() -> None:
    result = compose("wake me at seven", Intent("alarm/set", 0.9, l1="alarm"), PASSAGE)
    assert result.cited == frozenset()
    assert "alarm" in result.reply


def test_irrelevant_passage_is_not_cited() -> None:
    weak = Source(SourceKind.KNOWLEDGE, "weak#0", "Nothing useful.", 0.01)
    result = compose("what is the weather?", Intent("weather/query", 0.9, l1="weather"), weak)
    assert result.cited == frozenset()
    assert "weather" in result.reply


def test_out_of_scope_offers_top_alternatives() -> None:
    intent = Intent(
        "oos",
        0.2,
        out_of_scope=True,
        alternatives=(
            Alternative("music/play", 0.2),
            Alternative("play/radio", 0.1),
            Alternative("iot/hue_lightoff", 0.05),
        ),
    )
    result = compose("flumph the gizmo", intent)
    assert result.reply.startswith("I'm not sure what you mean.")
    assert "music play" in result.reply
    assert "play radio" in result.reply
    assert "hue" not in result.reply


def test_registry_falls_back_along_the_path() -> None:
    registry = ResponderRegistry(default=lambda r: Composition("default"))
    registry.register("alarm", lambda r: Composition("alarm"))
    registry.register("alarm/set", lambda r: Composition("alarm set"))
    intent = Intent("x", 1.0)
    request = ComposeInput("m", intent, Retrieved())
    assert registry.lookup("alarm/set/now")(request).reply == "alarm set"
    assert registry.lookup("alarm/query")(request).reply == "alarm"
    assert registry.lookup("music/play")(request).reply == "default"


def test_fallback_intent_has_its_own_reply() -> None:
    result = compose("set an alarm", Intent("general/fallback", 0.0, l1="general", fallback=True))
    assert "right now" in result.reply


def test_is_question() -> None:
    assert is_question("is it raining")
    assert is_question("play jazz?")
    assert not is_question("play some jazz")


def test_snippet_keeps_whole_sentences_within_the_limit() -> None:
    text = "One two three. Four five six. " + "x" * 400
    assert snippet(text, 40) == "One two three. Four five six."
    assert len(snippet("y" * 500, 50)) == 50
