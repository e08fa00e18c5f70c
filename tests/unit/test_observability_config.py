"""The Prometheus and Grafana files under deploy/: promtool accepts the configs and rules and the rules'
unit tests pass; the committed dashboard is what its builder generates; every query names only metrics
bucketrun exports (read from the real metric classes), RabbitMQ plugin metrics the README documents, or
``up``; every alert carries what an operator needs.

Without promtool (Debian's ``prometheus`` package) the promtool tests skip, except under ``CI=true``,
where a missing promtool is a failure: CI installs it (.ci/install-system-deps).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.backends.prometheus import prometheus_tool
from tests.observability_files import (
    DASHBOARD_FILE,
    GRAFANA_DIR,
    GRAFANA_README,
    PROMETHEUS_DIR,
    REPO,
    RULES_FILE,
    alerts,
    bucketrun_metric_names,
    committed_dashboard,
    data_panels,
    load_builder,
    metric_names,
    panel_queries,
    recorded_names,
    rules,
    substitute,
    variable_metrics,
)

COMPOSE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
KUBERNETES_CONFIG = PROMETHEUS_DIR / "prometheus-kubernetes.yml"
REQUIRED_ALERTS = {
    "BucketrunDispatcherDown",
    "BucketrunWatcherDown",
    "BucketrunBrokerDisconnected",
    "BucketrunDeadLettersGrowing",
    "BucketrunFailureRatioHigh",
    "BucketrunBacklogAgeHigh",
    "BucketrunEndToEndP99OverSLO",
    "BucketrunWatcherWithoutLeader",
}
NOT_CHARTED = {
    "bucketrun_records_written_total": "the same count as the sum of bucketrun_jobs_finished_total",
    "bucketrun_records_expired_total": "housekeeping, not traffic: the records retention's sweep",
}
"""bucketrun metrics no panel shows, and why."""
JOBS = {"bucketrun-dispatcher", "bucketrun-watcher", "bucketrun-serve", "bucketrun-api"}
"""The scrape job names the rules and the dashboard rely on."""


@pytest.fixture(scope="module")
def promtool() -> str:
    return prometheus_tool("promtool")


def _promtool(promtool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


# --- Prometheus -----------------------------------------------------------------------------------


def test_promtool_accepts_the_compose_config_and_its_rules(promtool) -> None:
    result = _promtool(promtool, "check", "config", COMPOSE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # rules/*.yml resolved beside the config


def test_promtool_accepts_the_kubernetes_config(promtool, tmp_path) -> None:
    document = yaml.safe_load(KUBERNETES_CONFIG.read_text())
    assert all("kubernetes_sd_configs" in job for job in document["scrape_configs"])
    result = _promtool(promtool, "check", "config", KUBERNETES_CONFIG)
    if "field kubernetes_sd_configs not found" in result.stderr + result.stdout:
        # Debian builds Prometheus without Kubernetes discovery. Check everything else (relabelling
        # regexes, rule files) with a static target in its place.
        for job in document["scrape_configs"]:
            job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["placeholder:8000"]}]
        shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
        stand_in = tmp_path / KUBERNETES_CONFIG.name
        stand_in.write_text(yaml.safe_dump(document))
        result = _promtool(promtool, "check", "config", stand_in)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_rules(promtool) -> None:
    result = _promtool(promtool, "check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules())} rules found" in result.stdout


def test_the_rules_unit_tests_pass(promtool) -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    result = _promtool(promtool, "test", "rules", *tests, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_tests_catch_a_broken_rule(promtool, tmp_path) -> None:
    """The unit tests can fail: the same tests against rules with a threshold changed do."""
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    (tmp_path / "rules").mkdir()
    text = RULES_FILE.read_text()
    assert "service:bucketrun_end_to_end_seconds:p99_30m > 600" in text
    broken = text.replace("service:bucketrun_end_to_end_seconds:p99_30m > 600", "vector(1) > 2")
    (tmp_path / "rules" / RULES_FILE.name).write_text(broken)
    result = _promtool(promtool, "test", "rules", tmp_path / "tests" / "bucketrun.test.yml")
    assert result.returncode != 0
    assert "BucketrunEndToEndP99OverSLO" in result.stdout + result.stderr


def test_every_alert_has_a_for_a_severity_and_annotations() -> None:
    found = alerts()
    assert set(found) >= REQUIRED_ALERTS
    for name, rule in found.items():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert f"deploy/grafana/README.md, {name}" in " ".join(annotations["runbook"].split()), name


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    cases: dict[str, set[bool]] = {}
    for path in (PROMETHEUS_DIR / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    for name in alerts():
        assert cases.get(name) == {True, False}, f"{name}: needs a firing and a not-firing case"


def test_rules_and_configs_name_the_same_scrape_jobs() -> None:
    compose = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert {job["job_name"] for job in compose["scrape_configs"]} == {*JOBS, "rabbitmq"}
    kubernetes = KUBERNETES_CONFIG.read_text()
    assert "replacement: bucketrun-$1" in kubernetes  # job = bucketrun-<component>
    used = set(re.findall(r"bucketrun-\(([a-z|]+)\)", RULES_FILE.read_text()))
    assert used
    for alternatives in used:
        assert {f"bucketrun-{part}" for part in alternatives.split("|")} <= JOBS


def test_compose_mounts_the_paths_these_files_expect() -> None:
    compose_file = REPO / "deploy" / "compose" / "compose.yaml"
    if not compose_file.exists():
        pytest.skip("no deploy/compose/compose.yaml")
    services = yaml.safe_load(compose_file.read_text())["services"]
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "../prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in prometheus
    assert "../prometheus/rules:/etc/prometheus/rules" in prometheus
    grafana = " ".join(services["grafana"]["volumes"])
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "bucketrun.yml").read_text())
    assert f"../grafana/dashboards:{provider['providers'][0]['options']['path']}" in grafana
    assert "../grafana/provisioning:/etc/grafana/provisioning" in grafana


# --- Grafana --------------------------------------------------------------------------------------


def test_the_committed_dashboard_is_the_generated_one() -> None:
    builder = load_builder()
    assert builder.DASHBOARD_PATH == DASHBOARD_FILE
    assert DASHBOARD_FILE.read_text(encoding="utf-8") == builder.render(), (
        "deploy/grafana/dashboards/bucketrun.json is stale: run python deploy/grafana/build_dashboard.py"
    )


def test_the_builder_check_mode_reports_a_stale_file(tmp_path, monkeypatch) -> None:
    builder = load_builder()
    assert builder.main(["--check"]) == 0
    stale = tmp_path / "bucketrun.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(builder, "DASHBOARD_PATH", stale)
    assert builder.main(["--check"]) == 1


def test_every_panel_has_a_query_and_a_description() -> None:
    panels = data_panels(committed_dashboard())
    assert len(panels) >= 15
    titles = [panel["title"] for panel in panels]
    assert len(titles) == len(set(titles)), "panel titles must be unique (the tests name panels by title)"
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_panels_do_not_overlap_on_the_grid() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in committed_dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_datasource_and_service_variables() -> None:
    dashboard = committed_dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioned["datasources"]
    assert variables["DS_PROMETHEUS"]["current"]["value"] == datasource["uid"] == "prometheus"
    service = variables["service"]
    assert service["includeAll"]
    assert service["multi"]
    assert service["allValue"] == ".*"
    queries = [query.expr for query in panel_queries(dashboard)]
    assert sum('service=~"$service"' in expr for expr in queries) >= 8


def test_every_queried_metric_is_exported_by_bucketrun_or_documented() -> None:
    exported = bucketrun_metric_names()
    dashboard = committed_dashboard()
    readme = GRAFANA_README.read_text(encoding="utf-8")
    expressions = [query.expr for query in panel_queries(dashboard)] + [rule["expr"] for rule in rules()]
    used = set(variable_metrics(dashboard))
    for expr in expressions:
        used |= metric_names(expr)
    unknown = {
        name
        for name in used - exported - recorded_names() - {"up"}
        if not (name.startswith("rabbitmq_") and f"`{name}`" in readme)
    }
    assert not unknown, f"queries use metrics nobody exports (or an undocumented rabbitmq_* one): {unknown}"
    # And the other way round: the dashboard charts every series bucketrun exports (histograms by
    # their buckets), but for the documented exceptions.
    charted = set(variable_metrics(dashboard))
    for query in panel_queries(dashboard):
        charted |= metric_names(query.expr)
    uncharted = {name for name in exported - charted if not name.endswith(("_count", "_sum"))}
    assert uncharted == set(NOT_CHARTED)


def test_the_rabbitmq_plugin_panels_are_exactly_those_with_rabbitmq_metrics() -> None:
    builder = load_builder()
    with_rabbitmq = {
        query.panel
        for query in panel_queries(committed_dashboard())
        if any(name.startswith("rabbitmq_") for name in metric_names(query.expr))
    }
    assert with_rabbitmq == set(builder.NEEDS_RABBITMQ_PLUGIN)


def test_the_readme_describes_every_panel_query_and_alert() -> None:
    readme = GRAFANA_README.read_text(encoding="utf-8")
    for query in panel_queries(committed_dashboard()):
        assert f"### {query.panel}\n" in readme, query.panel
        assert query.expr in readme, f"{query.panel} {query.ref_id}: query not in the README"
    for name in alerts():
        assert f"### {name}\n" in readme, name
    assert "return_per_object_metrics" in readme


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (service, le) (rate(a_bucket{service=~"$service"}[5m]))', {"a_bucket"}),
        ('x > 0 and on (service) y >= 5 or absent(up{job=~"a|b"})', {"x", "y", "up"}),
        ('label_replace(b, "dst", "$1", "src", "(.*)") / ignoring(le) c offset 5m', {"b", "c"}),
        ("histogram_quantile(0.99, sum(rate(d[1m])) by (le)) > 1e3", {"d"}),
        ("rec:name:ratio15m > bool 0.25", {"rec:name:ratio15m"}),
    ],
)
def test_metric_names_finds_exactly_the_selected_series(expr, names) -> None:
    assert metric_names(expr) == names


def test_substitution_leaves_no_grafana_variable() -> None:
    for query in panel_queries(committed_dashboard()):
        promql = substitute(query.expr)
        assert not re.search(r"\$(?!1\b)\w", promql), (query.panel, promql)  # $1 is label_replace's
