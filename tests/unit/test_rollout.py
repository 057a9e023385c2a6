"""Rollouts without a mesh: the topology's variants, the rendered split and mirror, the
policy on disk, the comparator's join and the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from switchboard_server.mesh.render import render_all
from switchboard_server.mesh.rollout.comparator import Answer, AnswerJoin, ComparatorMetrics
from switchboard_server.mesh.rollout.state import (
    ServicePolicy,
    ensure_runtime,
    read_policies,
    write_policies,
)
from switchboard_server.mesh.rollout.status import VariantStats, verdict
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import (
    Topology,
    TopologyError,
    default_topology,
    make_plan,
    parse_topology,
)
from switchboard_server.rollout_headers import TOTAL_WEIGHT, session_bucket


def _raw(**classification: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(default_topology().read_text())
    raw["services"]["classification"].update(classification)
    return raw


def _topology() -> Topology:
    return parse_topology(
        _raw(
            variants={
                "candidate": {"replicas": 2, "env": {"SWITCHBOARD_CLASSIFICATION_TFIDF_C": "2"}}
            },
            rollout={"split_methods": ["Classify"], "shadow_methods": ["Classify"]},
        )
    )


def test_variants_get_their_own_replicas_and_cluster() -> None:
    plan = make_plan(_topology(), MeshSettings())
    group = plan.replicas["classification"]
    assert [(r.name, r.variant, r.cluster) for r in group] == [
        ("classification-0", "stable", "classification"),
        ("classification-1", "candidate", "classification-candidate"),
        ("classification-2", "candidate", "classification-candidate"),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"variants": {"stable": {}}}, "variants.stable"),
        ({"variants": {"Cand": {}}}, "lower-case"),
        ({"rollout": {"split_methods": ["Classify"]}}, "declares no variants"),
        ({"variants": {"candidate": {}}, "rollout": {"split_methods": ["Nope"]}}, "not a method"),
        (
            {"variants": {"candidate": {}}, "rollout": {"shadow_methods": ["ClassifyStream"]}},
            "streams",
        ),
        ({"variants": {"candidate": {"replica": 1}}}, "unknown key"),
    ],
)
def test_bad_variants_are_named(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology(_raw(**extra))


def test_callers_split_by_session_bucket_and_mirror_by_runtime(tmp_path: Path) -> None:
    plan = make_plan(_topology(), MeshSettings())
    configs = render_all(plan, MeshSettings(), rollout_root=tmp_path)
    orch = configs["orchestration-0.sidecar"]
    listener = next(
        x for x in orch["static_resources"]["listeners"] if "classification" in x["name"]
    )
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    action = routes["classification.Classify"]["route"]
    split = action["weighted_clusters"]
    assert split["header_name"] == "x-switchboard-session-bucket"
    assert split["runtime_key_prefix"] == "rollout.classification.weight"
    assert [c["name"] for c in split["clusters"]] == ["classification-candidate", "classification"]
    (mirror,) = action["request_mirror_policies"]
    assert mirror["cluster"] == "classification-candidate"
    assert mirror["runtime_fraction"]["runtime_key"] == "rollout.classification.shadow.candidate"
    # only the split methods; AddExamples stays on stable
    assert routes["classification.AddExamples"]["route"]["cluster"] == "classification"
    layers = [x["name"] for x in orch["layered_runtime"]["layers"]]
    assert layers == ["static", "rollout", "admin"]
    # a service nobody with variants calls has no rollout layer
    ctx = configs["context-0.sidecar"]["layered_runtime"]["layers"]
    assert [x["name"] for x in ctx] == ["static", "admin"]


def test_policy_is_persisted_as_runtime_files(tmp_path: Path) -> None:
    topology = _topology()
    write_policies(
        tmp_path, topology, {"classification": ServicePolicy({"candidate": 10}, {"candidate": 50})}
    )
    base = tmp_path / "current" / "envoy" / "rollout" / "classification"
    assert (base / "weight" / "classification-candidate").read_text() == "1000"
    assert (base / "weight" / "classification").read_text() == str(TOTAL_WEIGHT - 1000)
    assert (base / "shadow" / "candidate").read_text() == "50"
    assert read_policies(tmp_path)["classification"].weights == {"candidate": 10}
    with pytest.raises(TopologyError, match="not a percentage"):
        write_policies(tmp_path, topology, {"classification": ServicePolicy({"candidate": 101})})
    with pytest.raises(TopologyError, match="unknown variant"):
        write_policies(tmp_path, topology, {"classification": ServicePolicy({"other": 1})})


def test_a_topology_without_variants_gets_an_empty_runtime_tree(tmp_path: Path) -> None:
    """`switchboard up` prepares the rollout tree whatever the topology: without
    variants it is empty, and `current` points at it (never dangles)."""
    ensure_runtime(tmp_path / "rollout", parse_topology(_raw()))
    current = tmp_path / "rollout" / "current"
    assert current.is_dir()
    assert list(current.iterdir()) == []


def test_session_bucket_is_stable_and_spread() -> None:
    assert session_bucket("abc") == session_bucket("abc")
    buckets = [session_bucket(f"s{i}") for i in range(10_000)]
    assert all(0 <= b < TOTAL_WEIGHT for b in buckets)
    share = sum(b < TOTAL_WEIGHT // 10 for b in buckets) / len(buckets)
    assert 0.09 < share < 0.11


def _join(max_pending: int = 100) -> tuple[AnswerJoin, CollectorRegistry]:
    registry = CollectorRegistry()
    return AnswerJoin(max_pending, ComparatorMetrics(registry)), registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_join_counts_agreement_in_either_order() -> None:
    join, registry = _join()
    join.add(Answer("r1", "stable", False, "alarm/set", "alarm"))
    join.add(Answer("r1", "candidate", True, "alarm/query", "alarm"))
    join.add(Answer("r2", "candidate", True, "oos", "oos"))  # shadow first
    join.add(Answer("r2", "stable", False, "oos", "oos"))
    compared = "switchboard_rollout_shadow_compared_total"
    agreed = "switchboard_rollout_shadow_agreed_total"
    assert _value(registry, compared, variant="candidate") == 2
    assert _value(registry, agreed, variant="candidate", level="intent") == 1
    assert _value(registry, agreed, variant="candidate", level="l1") == 2


def test_join_memory_is_bounded_and_orphans_are_counted() -> None:
    join, registry = _join(max_pending=10)
    for i in range(100):
        join.add(Answer(f"live-{i}", "stable", False, "a/b", "a"))
    join.add(Answer("lost", "candidate", True, "a/b", "a"))
    for i in range(10):
        join.add(Answer(f"more-{i}", "stable", False, "a/b", "a"))
    assert len(join) == 10
    assert _value(registry, "switchboard_rollout_shadow_unmatched_total", variant="candidate") == 1


def test_verdict_rolls_back_on_errors_or_latency_and_waits_for_traffic() -> None:
    settings = MeshSettings(rollout_min_requests=10)
    ok = VariantStats("stable", calls=100, failures=1, p99_ms=20.0)
    few = {"stable": ok, "candidate": VariantStats("candidate", calls=5, failures=5)}
    assert verdict(few, "candidate", settings).judged is False
    bad = {"stable": ok, "candidate": VariantStats("candidate", calls=50, failures=10)}
    assert verdict(bad, "candidate", settings).ok is False
    slow = {"stable": ok, "candidate": VariantStats("candidate", calls=50, p99_ms=500.0)}
    assert "p99" in verdict(slow, "candidate", settings).text
    assert verdict(slow, "candidate", settings).ok is False
    good = {"stable": ok, "candidate": VariantStats("candidate", calls=50, p99_ms=25.0)}
    assert verdict(good, "candidate", settings).ok is True


def test_verdict_rolls_back_a_model_that_answers_out_of_scope_or_disagrees() -> None:
    settings = MeshSettings(rollout_min_requests=10)
    stable = VariantStats("stable", calls=100, p99_ms=20.0, live_verdicts=100, out_of_scope=2)
    lost = VariantStats(
        "candidate", calls=50, p99_ms=20.0, live_verdicts=50, out_of_scope=44
    )  # the observed failure: 88 % out of scope against stable's 2 %
    result = verdict({"stable": stable, "candidate": lost}, "candidate", settings)
    assert (result.ok, "out of scope" in result.text) == (False, True)
    apart = VariantStats(
        "candidate", calls=50, p99_ms=20.0, live_verdicts=50, compared=40, agreed_intent=20
    )
    result = verdict({"stable": stable, "candidate": apart}, "candidate", settings)
    assert (result.ok, "agrees" in result.text) == (False, True)
    close = VariantStats(
        "candidate", calls=50, p99_ms=20.0, live_verdicts=50, compared=40, agreed_intent=38
    )
    assert verdict({"stable": stable, "candidate": close}, "candidate", settings).ok is True
