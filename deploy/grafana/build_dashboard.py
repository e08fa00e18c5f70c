"""Writes deploy/grafana/dashboards/bucketrun.json, bucketrun's Grafana dashboard, from the panel list below.

The dashboard is code so that a query changes in one place and the committed JSON can be checked
against it (tests/unit/test_observability_config.py); every query here is evaluated against a real
Prometheus scraping a running dispatcher and watcher by tests/integration/test_observability.py.
Plain Python, no dependency: ``python deploy/grafana/build_dashboard.py`` rewrites the JSON,
``--check`` only says whether it is current. deploy/grafana/README.md describes each panel.

Queries use two dashboard variables: ``$service`` (a regex; "All" is ``.*``) and the datasource
``${DS_PROMETHEUS}`` (provisioned with uid ``prometheus``), plus Grafana's ``$__rate_interval``.
Queue panels recognise bucketrun's queues by their suffixes (``.ingress``, ``.dead-letter``,
``.service.<name>``, ``.retry.<tier>``), as the alert rules do.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).resolve().parent / "dashboards" / "bucketrun.json"
UID = "bucketrun"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SERVICE = 'service=~"$service"'
RATE = "$__rate_interval"
CREATED = SERVICE + ', result="created"'
EXISTS = SERVICE + ', result="exists"'
NOT_SUCCEEDED = SERVICE + ', outcome!="succeeded"'
SLO_SECONDS = 600
"""The end-to-end SLO drawn on the latency panel; the same 10 minutes as BucketrunEndToEndP99OverSLO."""
BUCKETRUN_QUEUES = r'queue=~".+\\.(ingress|dead-letter|(service|retry)\\..+)"'
"""RabbitMQ's queue label matching bucketrun's queues (ingress, dead letters, services, retry tiers)."""


@dataclass(frozen=True)
class Query:
    """One PromQL target: *legend* is Grafana's legend format; *instant* for tables."""

    expr: str
    legend: str
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    """One panel: *kind* is Grafana's panel type; *right_axis* names refIds drawn on a right axis."""

    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    mappings: tuple[tuple[str, str, str], ...] = ()
    """Value mappings for stat panels: (value, text, colour)."""
    right_axis: dict[str, str] = field(default_factory=dict)
    """refId -> unit of a query drawn on a right axis."""
    slo_line: float | None = None


def _rate(metric: str, selector: str = "") -> str:
    return f"rate({metric}{{{selector}}}[{RATE}])" if selector else f"rate({metric}[{RATE}])"


def _quantile(q: float, histogram: str, by: str, selector: str = "") -> str:
    bucket = _rate(f"{histogram}_bucket", selector)
    return f"histogram_quantile({q}, sum by ({by}) ({bucket}))"


_UP_MAPPINGS = (("0", "down", "red"), ("1", "up", "green"))
_FINISHED = "bucketrun_jobs_finished_total"
_API_REQUESTS = "bucketrun_api_requests_total"
_API_LATENCY = "bucketrun_api_request_duration_seconds"

ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Health",
        (
            Panel(
                "Processes up",
                "Prometheus's own `up` for every bucketrun target: 1 when the last scrape of /metrics "
                "answered. A target at 0 is a process that is down or unreachable.",
                (Query('up{job=~"bucketrun-.+"}', "{{job}} {{instance}}"),),
                kind="stat",
                width=8,
                height=5,
                mappings=_UP_MAPPINGS,
            ),
            Panel(
                "Broker connection and readiness",
                "bucketrun_up per dispatcher: `broker` is 1 while it holds a RabbitMQ connection, `ready` "
                "while it consumes (what /readyz reports).",
                (Query("min by (instance, part) (bucketrun_up)", "{{instance}} {{part}}"),),
                kind="stat",
                width=8,
                height=5,
                mappings=_UP_MAPPINGS,
            ),
            Panel(
                "Watcher leader",
                "1 for the watcher that holds the Lease and records finished Jobs, 0 for standbys. "
                "Exactly one should be leader (`bucketrun serve` is always its own leader).",
                (
                    Query("max by (instance) (bucketrun_watcher_leader)", "{{instance}}"),
                    Query("sum(bucketrun_watcher_leader)", "leaders (want 1)"),
                ),
                kind="stat",
                width=8,
                height=5,
                mappings=(("0", "standby", "blue"), ("1", "leader", "green")),
            ),
            Panel(
                "Build info",
                "Which bucketrun version and Python each process runs (a rollout in progress shows two "
                "versions).",
                (
                    Query(
                        "max by (job, instance, component, version, python) (bucketrun_build_info)",
                        "",
                        instant=True,
                    ),
                ),
                kind="table",
                width=24,
                height=5,
            ),
        ),
    ),
    (
        "Throughput",
        (
            Panel(
                "Events and Jobs per second",
                "Messages taken off the ingress queue, events handed to each service (through its "
                "queue, or made into Jobs by the ingress consumer directly), the messages those handed "
                "through a queue travelled in (one event, or a batch gathered while the previous "
                "publish awaited its confirm), Jobs created and Jobs finished, per second. In a steady "
                "state they follow each other.",
                (
                    Query(f"sum({_rate('bucketrun_messages_received_total')})", "messages received"),
                    Query(
                        f"sum by (service) ({_rate('bucketrun_events_dispatched_total', SERVICE)})",
                        "dispatched: {{service}}",
                    ),
                    Query(f"sum({_rate('bucketrun_direct_creates_total')})", "of which created directly"),
                    Query(
                        f"sum by (service) ({_rate('bucketrun_handoff_messages_total', SERVICE)})",
                        "queue messages: {{service}}",
                    ),
                    Query(
                        f"sum by (service) ({_rate('bucketrun_jobs_created_total', CREATED)})",
                        "Jobs created: {{service}}",
                    ),
                    Query(f"sum by (service) ({_rate(_FINISHED, SERVICE)})", "Jobs finished: {{service}}"),
                ),
                unit="suffix:/s",
            ),
            Panel(
                "Events acked without a new Job",
                "Event records acked on purpose (folder markers, unhandled event types, filtered keys), "
                "by reason, and creations that found their Job already there (409: a redelivery or "
                "another replica made it), by service.",
                (
                    Query(
                        f"sum by (reason) ({_rate('bucketrun_events_ignored_total')})",
                        "ignored: {{reason}}",
                    ),
                    Query(
                        f"sum by (service) ({_rate('bucketrun_jobs_created_total', EXISTS)})",
                        "already existed: {{service}}",
                    ),
                ),
                unit="suffix:/s",
            ),
        ),
    ),
    (
        "Latency",
        (
            Panel(
                "End-to-end latency (upload to results and record)",
                "p50, p95 and p99 per service from the upload (the event's time) to the Job's results "
                f"and record written. The dashed line is the {SLO_SECONDS // 60}-minute SLO of "
                "BucketrunEndToEndP99OverSLO.",
                tuple(
                    Query(
                        _quantile(q, "bucketrun_end_to_end_seconds", "service, le", SERVICE),
                        f"p{round(q * 100)} {{{{service}}}}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
                slo_line=SLO_SECONDS,
            ),
            Panel(
                "Stage latency (p95)",
                "Where the time goes, p95 per stage: upload to the dispatcher taking the message, "
                "receipt to Job created (service queue wait, caps, retries), created to pod started, "
                "started to finished (the script), finished to record written.",
                (
                    Query(
                        _quantile(0.95, "bucketrun_event_to_received_seconds", "le"),
                        "upload → received",
                    ),
                    Query(
                        _quantile(0.95, "bucketrun_received_to_created_seconds", "service, le", SERVICE),
                        "received → created: {{service}}",
                    ),
                    Query(
                        _quantile(0.95, "bucketrun_job_created_to_started_seconds", "service, le", SERVICE),
                        "created → started: {{service}}",
                    ),
                    Query(
                        _quantile(0.95, "bucketrun_job_started_to_finished_seconds", "service, le", SERVICE),
                        "started → finished: {{service}}",
                    ),
                    Query(
                        _quantile(0.95, "bucketrun_job_finished_to_recorded_seconds", "le"),
                        "finished → recorded",
                    ),
                ),
                unit="s",
            ),
        ),
    ),
    (
        "Failures",
        (
            Panel(
                "Finished Jobs by outcome",
                "Finished Jobs per second by service and outcome (succeeded, failed, oom-killed, "
                "deadline-exceeded, evicted, image-pull-failed, config-error, unschedulable, "
                "pod-create-refused, input-missing, stage-in-failed, stage-out-failed, unknown).",
                (
                    Query(
                        f"sum by (service, outcome) ({_rate(_FINISHED, SERVICE)})",
                        "{{service}} {{outcome}}",
                    ),
                ),
                unit="suffix:/s",
            ),
            Panel(
                "Failure ratio",
                "Share of each service's finished Jobs that did not succeed (0 when all succeeded, no "
                "point when none finished). BucketrunFailureRatioHigh fires above 25% over 15 minutes.",
                (
                    Query(
                        f"(sum by (service) ({_rate(_FINISHED, NOT_SUCCEEDED)})"
                        f" or 0 * sum by (service) ({_rate(_FINISHED, SERVICE)}))"
                        f" / (sum by (service) ({_rate(_FINISHED, SERVICE)}) > 0)",
                        "{{service}}",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Dead letters by reason",
                "Messages the dispatcher sent to the dead-letter queue per second, by reason "
                "(the x-bucketrun-reason header: not-json, bad-record, unknown-bucket, ...).",
                (
                    Query(
                        f"sum by (reason) ({_rate('bucketrun_dead_lettered_total')})",
                        "{{reason}}",
                    ),
                ),
                unit="suffix:/s",
            ),
            Panel(
                "Dead-letter queue: depth and inflow",
                "Messages waiting in the dead-letter queue (left axis; they stay until someone reads "
                "them) and the rate at which the dispatcher dead-letters (right axis).",
                (
                    Query(
                        'max by (queue) (bucketrun_queue_messages{queue=~".+\\\\.dead-letter"})',
                        "depth: {{queue}}",
                    ),
                    Query(f"sum({_rate('bucketrun_dead_lettered_total')})", "dead-lettered"),
                ),
                right_axis={"B": "suffix:/s"},
            ),
            Panel(
                "Retries and errors by kind",
                "Dispatcher messages parked for a later attempt, by kind (api-5xx, api-429, amqp, "
                "storage-*, at-capacity), and the watcher's failed attempts to record a Job, by kind.",
                (
                    Query(
                        "label_replace(sum by (kind) "
                        f"({_rate('bucketrun_retries_total')}), "
                        '"source", "retry", "kind", ".*")'
                        " or label_replace(sum by (kind) "
                        f"({_rate('bucketrun_record_errors_total')}), "
                        '"source", "record error", "kind", ".*")',
                        "{{source}}: {{kind}}",
                    ),
                ),
                unit="suffix:/s",
                width=24,
            ),
        ),
    ),
    (
        "Backlog and capacity",
        (
            Panel(
                "Backlog per service",
                "Messages waiting in each service's queue (sampled by the dispatcher every "
                "BUCKETRUN_METRICS__QUEUE_SAMPLE_INTERVAL seconds), and in the ingress queue (not yet "
                "routed). A capped service at its max_concurrent_jobs keeps its backlog here. A "
                "service queue's message holds one event or a batch of them (Events and Jobs per "
                "second has the messages beside the events).",
                (
                    Query(
                        "max by (service) (label_replace("
                        'bucketrun_queue_messages{queue=~".+\\\\.service\\\\.($service)"}, '
                        '"service", "$1", "queue", ".+\\\\.service\\\\.(.+)"))',
                        "{{service}}",
                    ),
                    Query(
                        'max by (queue) (bucketrun_queue_messages{queue=~".+\\\\.ingress"})',
                        "ingress: {{queue}}",
                    ),
                ),
            ),
            Panel(
                "Running Jobs per service",
                "Jobs created and not yet finished, per service, as the dispatcher's executor counts "
                "them (the measure max_concurrent_jobs caps). Every dispatcher replica sees the same "
                "cluster, hence max rather than sum.",
                (Query(f"max by (service) (bucketrun_running_jobs{{{SERVICE}}})", "{{service}}"),),
            ),
        ),
    ),
    (
        "API",
        (
            Panel(
                "API requests by route and code",
                "Requests the OSCAR-compatible API (`bucketrun api`) answered per second, by method, route "
                "template (`/system/services/{name}`, never the name asked for) and status code. 401s "
                "are refused credentials; `unmatched` is a path no route serves.",
                (
                    Query(
                        f"sum by (method, route, code) ({_rate(_API_REQUESTS)})",
                        "{{method}} {{route}} {{code}}",
                    ),
                ),
                unit="suffix:/s",
            ),
            Panel(
                "API latency (p50, p99)",
                "From a request's arrival to the end of its answer, p50 and p99 per method and route "
                "template. Creating or updating a service applies its buckets, notifications and "
                "ConfigMap, so it takes longer than a read.",
                tuple(
                    Query(
                        _quantile(q, _API_LATENCY, "method, route, le"),
                        f"p{round(q * 100)} {{{{method}}}} {{{{route}}}}",
                    )
                    for q in (0.5, 0.99)
                ),
                unit="s",
            ),
        ),
    ),
    (
        "RabbitMQ (rabbitmq_prometheus plugin, per-object metrics)",
        (
            Panel(
                "RabbitMQ: messages per queue",
                "RabbitMQ's own count of ready and unacknowledged messages in bucketrun's queues "
                "(including the retry tiers, which bucketrun does not sample). Needs the "
                "rabbitmq_prometheus plugin scraped at /metrics/per-object (or "
                "prometheus.return_per_object_metrics = true).",
                (
                    Query(
                        f"sum by (queue) (rabbitmq_queue_messages_ready{{{BUCKETRUN_QUEUES}}})",
                        "ready: {{queue}}",
                    ),
                    Query(
                        f"sum by (queue) (rabbitmq_queue_messages_unacked{{{BUCKETRUN_QUEUES}}})",
                        "unacked: {{queue}}",
                    ),
                ),
            ),
            Panel(
                "RabbitMQ: consumers per queue",
                "Consumers attached to each of bucketrun's queues: one per dispatcher replica on the "
                "ingress and each service queue (0 on a capped service's queue while it is at its cap). "
                "Needs the rabbitmq_prometheus plugin's per-object metrics.",
                (
                    Query(
                        f"sum by (queue) (rabbitmq_queue_consumers{{{BUCKETRUN_QUEUES}}})",
                        "{{queue}}",
                    ),
                ),
            ),
        ),
    ),
)

NEEDS_RABBITMQ_PLUGIN: tuple[str, ...] = ("RabbitMQ: messages per queue", "RabbitMQ: consumers per queue")
"""Panels that show data only where RabbitMQ's rabbitmq_prometheus plugin is scraped (the integration
test exempts exactly these from "returns data", and checks they are exactly the rabbitmq_* ones)."""


def _targets(panel: Panel) -> list[dict[str, Any]]:
    targets = []
    for index, query in enumerate(panel.queries):
        target: dict[str, Any] = {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + index),
        }
        if query.instant:
            target.update({"format": "table", "instant": True, "range": False})
        else:
            target.update({"range": True})
        targets.append(target)
    return targets


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    overrides: list[dict[str, Any]] = []
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
        }
        defaults["min"] = 0
        if panel.slo_line is not None:
            defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": "transparent", "value": None}, {"color": "red", "value": panel.slo_line}],
            }
        for ref_id, unit in panel.right_axis.items():
            overrides.append(
                {
                    "matcher": {"id": "byFrameRefID", "options": ref_id},
                    "properties": [
                        {"id": "custom.axisPlacement", "value": "right"},
                        {"id": "unit", "value": unit},
                    ],
                }
            )
    if panel.mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {value: {"text": text, "color": colour, "index": i}},
            }
            for i, (value, text, colour) in enumerate(panel.mappings)
        ]
        defaults["color"] = {"mode": "fixed", "fixedColor": "text"}
    return {"defaults": defaults, "overrides": overrides}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        }
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {
        "legend": {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
        "targets": _targets(panel),
    }
    if panel.kind == "table":
        document["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ]
    return document


def _templating() -> dict[str, Any]:
    services = "label_values(bucketrun_running_jobs, service)"
    return {
        "list": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            },
            {
                "name": "service",
                "label": "Service",
                "type": "query",
                "datasource": DATASOURCE,
                "definition": services,
                "query": {"query": services, "refId": "service"},
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
                "regex": "",
                "options": [],
            },
        ]
    }


def build() -> dict[str, Any]:
    """The dashboard document: one row per group, panels laid out left to right on a 24-column grid."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y = next_id + 1, y + 1
        x, line_height = 0, 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id, x, line_height = next_id + 1, x + panel.width, max(line_height, panel.height)
        y += line_height
    return {
        "id": None,
        "uid": UID,
        "title": "bucketrun",
        "description": (
            "Uploads to Jobs to results: throughput, latency, failures, backlog (deploy/grafana/README.md)."
        ),
        "tags": ["bucketrun"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": _templating(),
        "panels": panels,
    }


def render() -> str:
    """The dashboard as the committed file's text (stable key order, two-space indent, final newline)."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard, or with ``--check`` exit 1 when the committed file is not current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DASHBOARD_PATH.read_text(encoding="utf-8") if DASHBOARD_PATH.exists() else ""
        if current != text:
            sys.stderr.write(f"{DASHBOARD_PATH} is out of date: run python {Path(__file__).name}\n")
            return 1
        return 0
    DASHBOARD_PATH.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {DASHBOARD_PATH}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
