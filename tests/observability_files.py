"""The observability files under deploy/ as the tests read them: the dashboard builder (loaded from its
path, deploy/ being no package), the committed dashboard's queries with their variables substituted,
the Prometheus rules, and the metric names a PromQL expression uses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from dispatcher.runtime.metrics import (
    ApiMetrics,
    DispatcherMetrics,
    WatcherMetrics,
    export_flags,
    new_registry,
)
from tests.script_modules import load_script

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "bucketrun.rules.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
BUILDER_FILE = GRAFANA_DIR / "build_dashboard.py"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "bucketrun.json"
GRAFANA_README = GRAFANA_DIR / "README.md"

SUBSTITUTIONS = {"$__rate_interval": "2m", "${DS_PROMETHEUS}": "prometheus", "$service": ".*"}
"""What Grafana would put in place of the dashboard's variables ("All" services; a rate window that
covers the integration test's whole workload)."""


def load_builder() -> ModuleType:
    """deploy/grafana/build_dashboard.py as a module (registered in ``sys.modules``, as its dataclasses
    need; loaded afresh each call, so a test may patch it)."""
    return load_script(BUILDER_FILE, "bucketrun_build_dashboard")


def committed_dashboard() -> dict[str, Any]:
    """The dashboard JSON as committed (what Grafana loads)."""
    document: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return document


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    panel: str
    ref_id: str
    expr: str

    @property
    def promql(self) -> str:
        """The expression with the dashboard's variables substituted (see ``SUBSTITUTIONS``)."""
        return substitute(self.expr)


def substitute(expr: str) -> str:
    """*expr* with every dashboard variable replaced as Grafana would (longest names first)."""
    for variable in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, SUBSTITUTIONS[variable])
    return expr


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows (including panels nested in collapsed rows)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every target expression of every panel."""
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"])
        for panel in data_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Metric names the template variables' ``label_values(metric, label)`` queries read."""
    names = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert match, f"unexpected variable query {variable['definition']!r}"
            names.add(match.group(1))
    return names


def rules() -> list[dict[str, Any]]:
    """Every recording and alerting rule of the rules file."""
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    """Alerting rules by name."""
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded_names() -> set[str]:
    """Names the recording rules define."""
    return {rule["record"] for rule in rules() if "record" in rule}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"inf", "nan", "Inf", "NaN"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names *expr* selects: identifiers that are not functions, keywords or label names
    (label names only occur in matchers and grouping clauses, which are removed first)."""
    text = _GROUPING.sub(" ", _BRACES.sub(" ", _STRING.sub('""', expr)))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or unit of a number, e.g. 1e3
        names.add(match.group())
    return names


def bucketrun_metric_names() -> set[str]:
    """Every series name bucketrun's processes can expose, read from fresh registries of the real
    metric classes: counters as ``*_total``, histograms as ``*_bucket``/``*_count``/``*_sum``."""
    registry = new_registry("test")
    dispatcher = DispatcherMetrics(registry)
    dispatcher.running_jobs(dict)
    dispatcher.queue_depths(dict)
    export_flags(registry, dict)
    WatcherMetrics(registry)
    ApiMetrics(registry)
    return _exposed_names(registry)


def _exposed_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names
