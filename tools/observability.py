"""Generates the Grafana dashboards and the PrometheusRule from their definitions here and in
rules.yml, into deploy/k8s/base/observability; ``--check`` fails if the files there differ.

Dashboards are written from code so that every panel has the same shape (datasource by the
provisioned uid, units, legends) and the tests can read each query back out of the JSON.

    uv run python tools/observability.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy/k8s/base/observability"
# Uids of the provisioned datasources (grafana-datasources.yaml): dashboards name them, so
# nothing is chosen by hand after an import.
PROMETHEUS = {"type": "prometheus", "uid": "twinstack-prometheus"}
INFLUXDB = {"type": "influxdb", "uid": "twinstack-influxdb"}
RATE = "$__rate_interval"
SERVICES = 'service=~"registry|ingestion|state|simulation"'


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (query, legend)
    unit: str = "short"
    kind: str = "timeseries"
    influx: bool = False
    description: str = ""
    width: int = 12


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[dict[str, Any]] = field(default_factory=list)


def _target(panel: Panel, index: int, query: str, legend: str) -> dict[str, Any]:
    ref = chr(ord("A") + index)
    if panel.influx:
        return {
            "refId": ref,
            "datasource": INFLUXDB,
            "query": query,
            "rawQuery": True,
            "resultFormat": "time_series",
            "alias": legend,
        }
    return {"refId": ref, "datasource": PROMETHEUS, "expr": query, "legendFormat": legend}


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels = []
    x = y = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(
            {
                "id": number,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": INFLUXDB if panel.influx else PROMETHEUS,
                "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    _target(panel, index, query, legend)
                    for index, (query, legend) in enumerate(panel.queries)
                ],
            }
        )
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["twinstack"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": dashboard.variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def _error_ratio(by: str) -> str:
    errors = 'rpc_grpc_status_code=~"INTERNAL|UNKNOWN|DATA_LOSS|UNAVAILABLE|DEADLINE_EXCEEDED"'
    total = f"sum by ({by}) (rate(rpc_server_duration_seconds_count[{RATE}]))"
    failed = f"sum by ({by}) (rate(rpc_server_duration_seconds_count{{{errors}}}[{RATE}]))"
    # A service without a single error has no error series: 0, not "no data".
    return f"({failed} or {total} * 0) / {total}"


OVERVIEW = Dashboard(
    "twinstack-overview",
    "twinstack / Platform overview",
    "Golden signals of every service: traffic, errors, latency, saturation.",
    [
        Panel(
            "Calls per second, by service",
            [
                (
                    f"sum by (service) (rate(rpc_server_duration_seconds_count[{RATE}]))",
                    "{{service}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Server-side errors, share of calls",
            [(_error_ratio("service"), "{{service}}")],
            unit="percentunit",
            description="INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE and DEADLINE_EXCEEDED.",
        ),
        Panel(
            "Call latency p99, by service",
            [
                (
                    "histogram_quantile(0.99, sum by (service, le) "
                    f"(rate(rpc_server_duration_seconds_bucket[{RATE}])))",
                    "{{service}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "Slowest methods, p99",
            [
                (
                    "topk(5, histogram_quantile(0.99, sum by (service, rpc_method, le) "
                    f"(rate(rpc_server_duration_seconds_bucket[{RATE}]))))",
                    "{{rpc_method}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "CPU, by replica",
            [(f"rate(process_cpu_seconds_total{{{SERVICES}}}[{RATE}])", "{{replica}}")],
            unit="percentunit",
        ),
        Panel(
            "Resident memory, by replica",
            [(f"process_resident_memory_bytes{{{SERVICES}}}", "{{replica}}")],
            unit="bytes",
        ),
        Panel(
            "Event loop lag p99, by replica",
            [
                (
                    "histogram_quantile(0.99, sum by (replica, le) "
                    f"(rate(twinstack_event_loop_lag_seconds_bucket[{RATE}])))",
                    "{{replica}}",
                )
            ],
            unit="s",
            description="How late the loop ran a timer: time every call on it waited.",
        ),
        Panel(
            "Scrape targets up",
            [(f"sum by (service) (up{{{SERVICES}}})", "{{service}}")],
        ),
    ],
)

PIPELINE = Dashboard(
    "twinstack-pipeline",
    "twinstack / Telemetry pipeline",
    "Ingest -> JetStream (TELEMETRY) -> historian -> InfluxDB, and -> state.",
    [
        Panel(
            "Points per second: accepted and stored",
            [
                (f"sum(rate(twinstack_ingestion_points_published_total[{RATE}]))", "accepted"),
                (f"sum(rate(twinstack_historian_points_written_total[{RATE}]))", "stored"),
            ],
            unit="short",
        ),
        Panel(
            "Consumer lag (messages not yet delivered)",
            [("max by (consumer) (twinstack_consumer_pending)", "{{consumer}}")],
        ),
        Panel(
            "Delivered, not yet acknowledged",
            [("max by (consumer) (twinstack_consumer_ack_pending)", "{{consumer}}")],
        ),
        Panel(
            "InfluxDB write latency p99, by outcome",
            [
                (
                    "histogram_quantile(0.99, sum by (outcome, le) "
                    f"(rate(twinstack_historian_write_duration_seconds_bucket[{RATE}])))",
                    "{{outcome}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "Historian retries and dead letters",
            [
                (f"sum(increase(twinstack_historian_write_retries_total[{RATE}]))", "retries"),
                (
                    f"sum by (consumer) (increase(twinstack_consumer_dead_letters_total[{RATE}]))",
                    "dead letters {{consumer}}",
                ),
            ],
        ),
        Panel(
            "Telemetry -> live state, p50 and p99",
            [
                (
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(twinstack_state_ingest_to_state_seconds_bucket[{RATE}])))",
                    "p50",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(twinstack_state_ingest_to_state_seconds_bucket[{RATE}])))",
                    "p99",
                ),
            ],
            unit="s",
        ),
        Panel(
            "Stream replicas: configured and current",
            [
                ("max by (stream) (twinstack_nats_stream_replicas)", "{{stream}} configured"),
                ("min by (stream) (twinstack_nats_stream_replicas_current)", "{{stream}} current"),
            ],
        ),
        Panel(
            "Messages stored per stream",
            [("max by (stream) (twinstack_nats_stream_messages)", "{{stream}}")],
        ),
    ],
)

TWINS = Dashboard(
    "twinstack-twins",
    "twinstack / Twins",
    "One twin's history from InfluxDB, and the live-state machinery around it.",
    [
        Panel(
            "History of $field on $twin",
            [
                (
                    'SELECT mean("$field") FROM "telemetry" WHERE "twin_id"::tag = \'$twin\' '
                    "AND $timeFilter GROUP BY time($__interval) fill(none)",
                    "$field",
                )
            ],
            influx=True,
            width=24,
        ),
        Panel(
            "Latest $field of $twin",
            [
                (
                    'SELECT last("$field") FROM "telemetry" WHERE "twin_id"::tag = \'$twin\' '
                    "AND $timeFilter",
                    "$field",
                )
            ],
            influx=True,
            kind="stat",
            width=6,
        ),
        Panel(
            "Twins and models in the registry",
            [
                ("max(twinstack_registry_index_twins)", "twins"),
                ("max(twinstack_registry_index_models)", "models"),
            ],
            width=6,
        ),
        Panel(
            "Watches open",
            [("sum by (replica) (twinstack_state_watches)", "{{replica}}")],
            width=6,
        ),
        Panel(
            "Partitions held per state replica",
            [
                ("sum by (member) (twinstack_state_partitions_held)", "{{member}}"),
                ("max(twinstack_state_partitions)", "in all"),
            ],
            width=6,
        ),
    ],
    variables=[
        {
            "name": "twin",
            "label": "Twin",
            "type": "query",
            "datasource": INFLUXDB,
            "query": 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "twin_id"',
            "refresh": 2,
            "sort": 1,
        },
        {
            "name": "field",
            "label": "Field",
            "type": "query",
            "datasource": INFLUXDB,
            "query": 'SHOW FIELD KEYS FROM "telemetry"',
            "refresh": 2,
            "sort": 1,
        },
    ],
)

SIMULATION = Dashboard(
    "twinstack-simulation",
    "twinstack / Simulation",
    "Sweeps queued and running, their throughput, and the simulation API.",
    [
        Panel(
            "Sweeps, by state",
            [("max by (state) (twinstack_simulation_sweeps)", "{{state}}")],
        ),
        Panel(
            "Oldest queued sweep's wait",
            [("max(twinstack_simulation_queue_oldest_age_seconds)", "waited")],
            unit="s",
        ),
        Panel(
            "Scenarios per second",
            # Every replica counts every sweep's progress: the max, not the sum.
            [(f"max(rate(twinstack_simulation_scenarios_total[{RATE}]))", "scenarios/s")],
        ),
        Panel(
            "Sweeps ended in the last hour, by state",
            [
                (
                    "max by (state) (increase(twinstack_simulation_sweeps_ended_total[1h]))",
                    "{{state}}",
                )
            ],
        ),
        Panel(
            "Simulation calls per second, by method",
            [
                (
                    "sum by (rpc_method) (rate(rpc_server_duration_seconds_count"
                    f'{{service="simulation"}}[{RATE}]))',
                    "{{rpc_method}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Simulation CPU, by replica",
            [
                (
                    f'rate(process_cpu_seconds_total{{service="simulation"}}[{RATE}])',
                    "cpu {{replica}}",
                ),
            ],
            unit="percentunit",
        ),
    ],
)

DASHBOARDS = {
    "platform-overview.json": OVERVIEW,
    "telemetry-pipeline.json": PIPELINE,
    "twins.json": TWINS,
    "simulation.json": SIMULATION,
}


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "twinstack",
            "labels": {"app.kubernetes.io/part-of": "twinstack", "prometheus": "twinstack"},
        },
        "spec": rules,
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the longer expressions) as literal blocks, as rules.yml has."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def generated() -> dict[Path, str]:
    files = {
        OUT / "dashboards" / name: json.dumps(render(board), indent=2) + "\n"
        for name, board in DASHBOARDS.items()
    }
    rules = yaml.safe_load((OUT / "rules.yml").read_text())
    files[OUT / "prometheusrule.yaml"] = (
        "# Generated from rules.yml by tools/observability.py: edit that file, then run it.\n"
        + yaml.dump(prometheus_rule(rules), Dumper=_BlockDumper, sort_keys=False, width=100)
    )
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    check = parser.parse_args().check
    stale = []
    for path, text in generated().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run: uv run python tools/observability.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
