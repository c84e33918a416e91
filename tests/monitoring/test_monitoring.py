"""monitoring/: the Prometheus config and alert rules through the real promtool (check config, check
rules, the alerts' unit tests), the Grafana dashboard's queries parsed by promtool too, and what a run's
metrics subscriber (`orchestrator run --metrics-file / --pushgateway`) and the store follower (the
dashboard's /metrics) count for a run. The live scrape of a real `orchestrator serve` after the demo, with
every family and every queried metric, is test_live_serve.py.

promtool comes from Debian's `prometheus` package (scripts/setup.sh installs it for the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.events import GateFinished, RunEvent
from orchestrator.metrics import METRIC_FAMILIES, metrics_subscriber, render_metrics
from orchestrator.proc import run_command

from .queries import (
    DASHBOARD,
    MONITORING,
    ROOT,
    alert_rules,
    dashboard_queries,
    exported_names,
    exposed_name,
    parse,
    queried_metrics,
    sample,
)

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
CHANGES = (
    '```json\n{"verdict": "request_changes", "findings": [{"severity": "high", "file": "app.py", '
    '"line": 1, "message": "greet() must return Hello"}]}\n```'
)


def promtool(*args: str, cwd: Path = MONITORING) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not installed; `sudo apt-get install prometheus` (scripts/setup.sh test does it)",
            pytrace=False,
        )
    result = run_command([exe, *args], cwd, timeout_s=120)
    assert result.ok, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


# --- promtool ---------------------------------------------------------------------------------------


def test_prometheus_config_is_valid(tmp_path):
    # The token file is the deployment's (never committed): the copy gets one where compose puts it.
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    (copy / "secrets").mkdir(exist_ok=True)
    (copy / "secrets" / "orchestrator-token").write_text("test-token-not-secret\n")
    out = promtool("check", "config", "prometheus.yml", cwd=copy)
    assert "SUCCESS" in out and "4 rules found" in out


def test_alert_rules_are_valid():
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS: 4 rules found" in out


def test_alert_unit_tests_pass():
    out = promtool("test", "rules", "tests/alerts_test.yml")
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load((MONITORING / "tests" / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} never tested quiet"


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool parses PromQL in rule files: each panel query becomes a recording rule to check.
    # $__rate_interval is Grafana's; Grafana puts a duration there.
    rules = [
        {"record": f"panel:query{n}", "expr": expr.replace("$__rate_interval", "5m")}
        for n, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    out = promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_grafana_provisioning_points_at_the_dashboard_and_the_datasource():
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/orchestrator.yml").read_text())[
        "providers"
    ][0]
    data = json.loads(DASHBOARD.read_text())
    uids = {panel["datasource"]["uid"] for panel in data["panels"]}
    uids |= {t["datasource"]["uid"] for panel in data["panels"] for t in panel["targets"]}
    assert uids == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{provider['options']['path']}:ro" in grafana_mounts
    titles = {panel["title"] for panel in data["panels"]}
    for wanted in ("Active runs", "Cost per agent and day", "Agent errors by kind"):
        assert wanted in titles


# --- what the queries name is what the code exports ---------------------------------------------------


def rendered(registry: CollectorRegistry) -> dict[str, Any]:
    body, content_type = render_metrics(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    return parse(body.decode())


def demo_like_run(tmp_path: Path, registry: CollectorRegistry | None) -> tuple[dict[str, Any], str]:
    """The demo's shape with the fake agent: implement (claude is not ready here: fake takes it), a gate
    that fails, review asks for changes, refine, the gate passes, the second review approves. Scrapes
    what the registry held mid-run (at the first gate) and the run id."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    (repo / "app.py").write_text("def greet():\n    return 'hi'\n")
    run_command(["git", "add", "-A"], repo, check=True)
    ident = ["-c", "user.name=u", "-c", "user.email=u@u"]
    run_command(["git", *ident, "commit", "-qm", "initial"], repo, check=True)
    check = "import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\n"
    scenario = tmp_path / "scenario.yaml"
    turns = [
        {"write_file": {"path": "check.py", "content": check}},
        {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hi'\n"}},
        {"text": "implemented"},
        {"text": CHANGES},
        {"edit_file": {"path": "app.py", "old": "'Hi'", "new": "'Hello'"}},
        {"text": "refined"},
        {"text": APPROVE},
    ]
    scenario.write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    steps = [
        {"agent": "claude", "task": "implement"},
        {"run": f"{sys.executable} check.py", "name": "check"},
        {"agent": "fake", "task": "review"},
        {"agent": "fake", "task": "refine"},
    ]
    workflow.write_text(yaml.safe_dump({"max_iterations": 3, "steps": steps}))
    settings = settings_from_data(
        {
            "agents": {
                "claude": {"command": "/nonexistent/claude"},
                "fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}, "timeout_s": 60},
            },
            "fallback_order": ["fake"],
        }
    )
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}
    service = RunService(settings=settings, env=env)
    mid_run: dict[str, Any] = {}

    def scrape_at_first_gate(event: RunEvent) -> None:
        if registry is not None and isinstance(event, GateFinished) and not mid_run:
            mid_run.update(rendered(registry))

    try:
        record = service.create(RunSpec(task="greet() returns Hello", cwd=repo, workflow=str(workflow)))
        subscribers = [scrape_at_first_gate] + (
            [metrics_subscriber(registry)] if registry is not None else []
        )
        report = service.execute(record.id, subscribers=subscribers)
    finally:
        service.close()
    assert report.status == "approved", report
    return mid_run, record.id


def test_a_runs_metrics_subscriber_counts_what_the_run_did(tmp_path):
    """The subscriber `orchestrator run --metrics-file / --pushgateway` puts on its run's bus."""
    registry = CollectorRegistry()
    mid_run, run_id = demo_like_run(tmp_path, registry)
    families = rendered(registry)
    assert set(METRIC_FAMILIES) <= {exposed_name(f) for f in families.values()}
    missing = queried_metrics() - exported_names(families)
    assert not missing, f"queried but never exported: {sorted(missing)}"

    # The run's numbers, as a scraper sees them.
    assert sample(families, "orchestrator_runs_total", status="approved", workflow="wf") == 1
    assert sample(families, "orchestrator_runs_started_total", workflow="wf") == 1
    assert sample(families, "orchestrator_runs_active") == 0
    assert sample(families, "orchestrator_steps_total", agent="fake", task="implement", status="succeeded")
    assert sample(families, "orchestrator_step_duration_seconds_count", agent="fake", task="review") == 2
    assert sample(families, "orchestrator_gates_total", result="failed") == 1
    assert sample(families, "orchestrator_gates_total", result="passed") == 1
    assert sample(families, "orchestrator_fallbacks_total", agent="claude", reason="not_ready") == 1
    tokens = sample(families, "orchestrator_tokens_total", agent="fake", model="scripted-model", kind="input")
    assert tokens is not None and tokens > 0
    cost = sample(families, "orchestrator_cost_usd_total", agent="fake", model="scripted-model")
    assert cost is not None and cost > 0
    # Mid-run: the run was active and its last event's time was there for the stall alert.
    assert sample(mid_run, "orchestrator_runs_active") == 1
    last = sample(mid_run, "orchestrator_run_last_event_timestamp_seconds", run_id=run_id, workflow="wf")
    assert last is not None and last > 1.7e9
    # ... and gone once the run finished.
    assert sample(families, "orchestrator_run_last_event_timestamp_seconds", run_id=run_id) is None


def test_metrics_follow_the_store_event_log_of_runs_made_elsewhere(tmp_path):
    """A dashboard serving /metrics for runs another process made: the follower reads the store."""
    from orchestrator.metrics_follow import StoreMetricsFollower
    from orchestrator.store import Store

    # The run writes its events to the store only (no metrics subscriber on its bus).
    demo_like_run(tmp_path, None)
    registry = CollectorRegistry()
    with Store(tmp_path / "state" / "state.db") as store:
        follower = StoreMetricsFollower(store, registry, since=0)
        fed = follower.poll()
        assert fed > 10
        assert follower.poll() == 0  # nothing new: nothing counted twice
    families = rendered(registry)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("orchestrator_runs_total", (("status", "approved"), ("workflow", "wf")))] == 1
    assert samples[("orchestrator_gates_total", (("result", "failed"),))] == 1
    assert samples[("orchestrator_fallbacks_total", (("agent", "claude"), ("reason", "not_ready")))] == 1


def test_the_readme_lists_every_metric_and_every_alert():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Operating it", 1)[1].split("\n## ", 1)[0]
    for name in METRIC_FAMILIES:
        assert f"`{name}" in section, name
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in section, rule["alert"]
