"""What monitoring/ queries, and what a scrape exports: shared by the promtool tests and the live scrape
of `orchestrator serve`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "orchestrator.json"
METRIC_NAME = re.compile(r"\borchestrator_[a-z_]+\b")


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in data["panels"] for target in panel["targets"]]


def queried_metrics() -> set[str]:
    """Every metric name an alert rule or a Grafana panel's query uses."""
    queried: set[str] = set()
    for expr in [rule["expr"] for rule in alert_rules()] + dashboard_queries():
        queried |= set(METRIC_NAME.findall(expr))
    return queried


def parse(text: str) -> dict[str, Any]:
    """A scrape's families by name (counters without `_total`, as the parser names them)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def exported_names(families: dict[str, Any]) -> set[str]:
    """Every name a query may use: sample names (with _total, _bucket, _sum, _count) and families."""
    names = set()
    for family in families.values():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        names |= {sample.name for sample in family.samples}
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def exposed_name(family: Any) -> str:
    """The family's name as METRIC_FAMILIES spells it (counters with `_total`)."""
    return str(family.name) + ("_total" if family.type == "counter" else "")


def with_samples(families: dict[str, Any]) -> set[str]:
    """The families (as exposed) that hold something: a gauge with a sample (0 is a value: no run
    active), a counter with a sample above 0, a histogram with an observation (one without labels
    shows empty buckets from the start)."""
    held = set()
    for family in families.values():
        if family.type == "histogram":
            values = [s.value for s in family.samples if s.name.endswith("_count")]
        elif family.type == "counter":
            values = [s.value for s in family.samples if s.name.endswith("_total")]
        else:
            values = [1.0 for _ in family.samples]
        if any(v > 0 for v in values):
            held.add(exposed_name(family))
    return held


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    """The value of the first sample called `name` whose labels include `labels`."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def total(families: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of every sample called `name` whose labels include `labels` (0 when none)."""
    return sum(
        float(s.value)
        for family in families.values()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
