"""Prometheus and Grafana artifacts under docker/: valid, tested, in step with the topology.

Runs the real ``promtool`` (Debian package ``prometheus``, installed by
``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard_server.deploy.settings import DeploySettings
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.slo import render_slo_rules

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "docker" / "prometheus"
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "switchboard.json"
RECORDED = re.compile(r"switchboard:[a-z0-9_]+:[a-z0-9_]+")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: run scripts/install-system-deps.sh (Debian: prometheus)"
    done = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))


def rules() -> list[dict[str, Any]]:
    """Every rule of every file under rules/ (Prometheus loads rules/*.yml)."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += group["rules"]
    return found


def dashboard_panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def test_promtool_checks_config_and_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert {p.name for p in RULE_FILES} >= {"switchboard.yml", "slo.yml"}
    for path in RULE_FILES:
        assert "SUCCESS" in promtool("check", "rules", f"rules/{path.name}")


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_alert_unit_tests_pass(path: Path) -> None:
    assert "SUCCESS" in promtool("test", "rules", f"tests/{path.name}")


def test_every_alert_has_a_promtool_case_that_fires_it() -> None:
    """Each alert of rules/ is expected to fire in some test case of tests/ (and every
    rule file is loaded by some test file), so no alert ships untested."""
    alerts = {r["alert"] for r in rules() if "alert" in r}
    fired: set[str] = set()
    loaded: set[Path] = set()
    for path in TEST_FILES:
        spec = yaml.safe_load(path.read_text())
        loaded |= {(path.parent / f).resolve() for f in spec["rule_files"]}
        for case in spec["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert len(alerts) >= 11
    assert sorted(alerts - fired) == []
    assert {p.resolve() for p in RULE_FILES} <= loaded


def test_the_slo_rules_are_rendered_from_the_default_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("SWITCHBOARD_OBS_")]:
        monkeypatch.delenv(name)
    committed = (PROMETHEUS / "rules" / "slo.yml").read_text()
    assert committed == render_slo_rules(ObservabilitySettings()), (
        "docker/prometheus/rules/slo.yml is stale: run scripts/slo_rules.py"
    )
    defaults = ObservabilitySettings.model_fields
    assert defaults["slo_chat_latency_s"].default == 1.0
    assert 'le=~"1(\\\\.0)?"' in committed
    assert "/ 0.001 > 14.4" in committed  # 99.9 % availability
    assert "/ 0.01 > 14.4" in committed  # 99 % latency


def test_another_threshold_renders_valid_rules_and_a_non_bucket_is_refused(
    tmp_path: Path,
) -> None:
    text = render_slo_rules(
        ObservabilitySettings(slo_chat_latency_s=0.25, slo_chat_availability=0.995)
    )
    assert 'le=~"0\\\\.25"' in text
    assert "/ 0.005 > 14.4" in text
    path = tmp_path / "slo.yml"
    path.write_text(text)
    assert "SUCCESS: 18 rules found" in promtool("check", "rules", str(path))
    with pytest.raises(ValueError, match="slo_chat_latency_s"):
        ObservabilitySettings(slo_chat_latency_s=0.3)


def test_alerts_cover_the_issue_list() -> None:
    alerts = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    wanted = {
        "SwitchboardHighErrorRatio": "error_ratio",
        "SwitchboardHighLatencyP99": "p99",
        "SwitchboardHighRetryRate": "retry_ratio",
        "SwitchboardOutlierEjections": "ejections",
        "SwitchboardCircuitBreakerOverflow": "overflows",
    }
    for alert, fragment in wanted.items():
        assert fragment in alerts[alert], alert


def test_scrape_targets_match_the_topology() -> None:
    """prometheus.yml is rendered for Compose (`make render`): every replica's app and
    sidecar, and the edge, on the scrape port of the pod's Envoy."""
    topology = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scrape_port = str(DeploySettings.model_fields["scrape_port"].default)

    def targets(job: str) -> set[tuple[str, str, str]]:
        return {
            (sc["labels"]["service"], sc["labels"]["component"], sc["targets"][0])
            for sc in jobs[job]["static_configs"]
        }

    services = topology["services"]
    assert jobs["switchboard-app"]["metrics_path"] == "/metrics"
    assert jobs["switchboard-envoy"]["metrics_path"] == "/stats/prometheus"
    replicas = {
        (name, f"{name}-{i}") for name, spec in services.items() for i in range(spec["replicas"])
    }
    assert targets("switchboard-app") == {
        (name, "app", f"{host}:{scrape_port}") for name, host in replicas
    }
    assert targets("switchboard-envoy") == {
        (name, "sidecar", f"{host}:{scrape_port}") for name, host in replicas
    } | {("edge", "edge", f"edge:{scrape_port}")}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query, with Grafana variables filled in, passes promtool as a rule."""
    exprs = [
        e.replace("$__rate_interval", "1m").replace("$service", "context")
        for e in dashboard_exprs()
    ]
    assert exprs
    rules: list[dict[str, str]] = []
    group = {"name": "dashboard", "rules": rules}
    for i, expr in enumerate(exprs):
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    assert f"SUCCESS: {len(exprs)} rules found" in promtool("check", "rules", str(path))


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard_panels()
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "switchboard.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file"
    assert dashboard["uid"]
    assert dashboard["title"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] < pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]
    # no two panels overlap
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    # the repeated per-service row puts app RED beside sidecar retries/ejections
    variable = dashboard["templating"]["list"][0]["name"]
    (row,) = [p for p in panels if p.get("repeat") == variable]
    same_row = [p for p in panels if p["gridPos"]["y"] == row["gridPos"]["y"] + 1]
    text = " ".join(t["expr"] for p in same_row for t in p["targets"])
    for metric in (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "envoy_cluster_upstream_rq_retry",
        "envoy_cluster_outlier_detection_ejections_enforced_total",
    ):
        assert metric in text, metric


def test_recorded_series_used_anywhere_are_defined() -> None:
    defined = {r["record"] for r in rules() if "record" in r}
    used = set(RECORDED.findall(" ".join(dashboard_exprs())))
    used |= set(RECORDED.findall(" ".join(r["expr"] for r in rules())))
    assert used <= defined, used - defined


@pytest.mark.parametrize(
    "path", sorted([*PROMETHEUS.rglob("*.yml"), *GRAFANA.rglob("*.yml")]), ids=str
)
def test_yaml_artifacts_parse(path: Path) -> None:
    assert yaml.safe_load(path.read_text()) is not None
