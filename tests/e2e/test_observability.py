"""A real Prometheus scrapes the real platform under load.

Every query of the shipped Grafana dashboards is executed (Prometheus panels against the
Prometheus, InfluxDB panels and variables against the platform's InfluxDB) and must return
series; every alert rule's expression must evaluate, and every metric it reads must have series.
Then InfluxDB is stopped and the historian's alert must fire. The services also send traces
to the local OTLP receiver of `twinstack up --observe`: one ingest call's trace must show the
gRPC call, its JetStream publish, and the historian's (with its InfluxDB write) and state's batch
spans linked to it.

The rules Prometheus loads here are the shipped file with the historian alert's ``for`` set to 0:
its expression is the shipped one, only the wait before firing is shortened. (When each alert
fires, and does not, is unit-tested with promtool: tests/unit/deploy/alerts_test.yml.)
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import yaml

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.common.influx import InfluxStore
from twinstack.devstack import LocalPlatform, PrometheusServer, wait_until
from twinstack.devstack.observe import DASHBOARDS_DIR, RULES_FILE
from twinstack.devstack.traces import TraceReceiver, TraceTree, read_spans, trace_tree
from twinstack.sdk import ApiError, Client, ConnectConfig, Endpoints
from twinstack.sdk.examples import FED_TWINS, SensorFeeder, ensure_example_twins

ALL_FREE_PORTS = {"registry": 0, "ingestion": 0, "state": 0, "simulation": 0}
# What Grafana puts in place of its global variables, for a scrape every second.
GRAFANA_GLOBALS = {
    "$__rate_interval": "30s",
    "$__interval": "10s",
    "$timeFilter": "time > now() - 1h",
}
# Names of the metrics an expression reads: ours, gRPC's, the process's and `up`.
METRIC_NAME = re.compile(r"\b(?:twinstack_\w+|rpc_server_\w+|process_\w+|up)\b(?=\s*[{\[)\s])")
HISTORIAN_ALERT = "TwinstackHistorianRetryStorm"


@dataclass
class Observed:
    platform: LocalPlatform
    prometheus: PrometheusServer
    traces: TraceReceiver
    client: Client
    twin: str
    field: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(where, datasource type, query) of every panel target and template variable."""
    found = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                kind = target["datasource"]["type"]
                query = target["expr"] if kind == "prometheus" else target["query"]
                found.append((f"{name}: {panel['title']}", kind, query))
        for variable in board["templating"]["list"]:
            found.append(
                (f"{name}: ${variable['name']}", variable["datasource"]["type"], variable["query"])
            )
    return found


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def with_variables(query: str, variables: dict[str, str]) -> str:
    for name, value in {**GRAFANA_GLOBALS, **variables}.items():
        query = query.replace(name, value)
    return query


def influx_query(platform: LocalPlatform, query: str) -> list[Any]:
    async def run() -> list[Any]:
        store = InfluxStore(platform.influx.url, "twinstack", **platform.influx.credentials)
        try:
            return list(await store.query(query))
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, ray_env: dict[str, str]
) -> Iterator[Observed]:
    directory = tmp_path_factory.mktemp("observed")
    traces = TraceReceiver(directory / "traces.jsonl")
    traces.start()
    platform = LocalPlatform(
        directory / "platform",
        nats_port=0,
        influx_port=0,
        service_ports=ALL_FREE_PORTS,
        service_env={
            **ray_env,
            "TWINSTACK_LOG_FORMAT": "console",
            "TWINSTACK_OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint,
            "TWINSTACK_OTEL_EXPORT_METRICS": "false",
        },
    )
    platform.start()
    rules = yaml.safe_load(RULES_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == HISTORIAN_ALERT:
                rule["for"] = "0s"
    quick_rules = directory / "rules.yml"
    quick_rules.write_text(yaml.safe_dump(rules))
    prometheus = PrometheusServer(
        directory / "prometheus",
        platform.scrape_targets(),
        rule_files=[quick_rules],
        scrape_interval_s=1.0,
    )
    client = Client(
        ConnectConfig(Endpoints(**platform.targets()), token=platform.admin_token, timeout_s=30)
    )
    feeder = SensorFeeder(client, period_s=0.2)
    watching = threading.Event()
    closing = threading.Event()

    def watch() -> None:
        try:
            for _ in client.state.watch(all_twins=True):
                watching.set()
        except ApiError:
            if not closing.is_set():
                raise  # the watch is ended by closing the client, and only so

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        prometheus.start()
        ensure_example_twins(client)
        feeder.start()
        watcher.start()
        wait_until(watching.is_set, timeout_s=30, what="a watch open")
        fed = FED_TWINS[0]
        assert fed.signal is not None
        # A field stored as a double (the twins dashboard reads the "telemetry" measurement).
        sample = fed.signal(0.0, random.Random(1))
        field = next(name for name, value in sample.items() if isinstance(value, float))
        yield Observed(platform, prometheus, traces, client, fed.twin_id, field)
    finally:
        closing.set()
        feeder.stop()
        client.close()
        prometheus.stop()
        platform.stop()
        traces.stop()


def empty_queries(observed: Observed) -> list[str]:
    """The dashboard queries that return no series now."""
    variables = {"$twin": observed.twin, "$field": observed.field}
    empty = []
    for where, kind, query in dashboard_queries():
        concrete = with_variables(query, variables)
        if kind == "prometheus":
            result = observed.prometheus.query(concrete)
        else:
            result = influx_query(observed.platform, concrete)
        if not result:
            empty.append(f"{where}: {concrete}")
    return empty


def test_every_target_is_scraped(observed: Observed) -> None:
    targets = {t.address for t in observed.platform.scrape_targets()}
    assert len(targets) == 4
    wait_until(
        lambda: (
            set(observed.prometheus.target_health().values()) == {"up"}
            and set(observed.prometheus.target_health()) == targets
        ),
        timeout_s=30,
        what="every service scraped",
    )


def test_every_dashboard_query_returns_series(observed: Observed) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 30
    assert {kind for _, kind, _ in queries} == {"prometheus", "influxdb"}
    # Rates need two scrapes of a counter that moved, histograms a sample in the window.
    empty: list[str] = []

    def none_empty() -> bool:
        empty[:] = empty_queries(observed)
        return not empty

    try:
        wait_until(none_empty, timeout_s=90, interval_s=2.0, what="every query answering")
    except TimeoutError:
        pytest.fail("queries without series:\n" + "\n".join(empty))


def test_every_alert_rule_evaluates_on_metrics_that_exist(observed: Observed) -> None:
    rules = alert_rules()
    loaded = {rule["alert"]: rule for rule in alert_rules()}
    assert len(rules) >= 8
    answer = observed.prometheus.rules()
    evaluated = {
        rule["name"]: rule
        for group in answer
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }
    assert set(evaluated) == set(loaded)
    missing = []
    for rule in rules:
        assert evaluated[rule["alert"]]["health"] == "ok", evaluated[rule["alert"]]
        observed.prometheus.query(rule["expr"])  # raises if Prometheus refuses it
        names = set(METRIC_NAME.findall(rule["expr"]))
        assert names, rule["alert"]
        for name in names:
            if not observed.prometheus.query(name):
                missing.append(f"{rule['alert']}: {name}")
        assert rule["annotations"]["runbook"].startswith("docs/operations.md#")
    assert not missing, f"alert rules read metrics that have no series: {missing}"


def test_an_ingest_call_is_traced_through_jetstream_to_influxdb_and_state(
    observed: Observed,
) -> None:
    trace_id = secrets.token_hex(16)
    point = types_pb2.TelemetryPoint(
        twin_id=observed.twin, fields={observed.field: types_pb2.Value(double_value=1.5)}
    )
    point.time.FromNanoseconds(time.time_ns())
    target = observed.platform.targets()["ingestion"]
    with grpc.insecure_channel(target) as channel:
        ingestion_pb2_grpc.IngestionServiceStub(channel).IngestBatch(
            ingestion_pb2.IngestBatchRequest(points=[point]),
            metadata=(
                ("authorization", f"Bearer {observed.platform.admin_token}"),
                ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),
            ),
            timeout=30,
        )

    def traced() -> TraceTree | None:
        tree = trace_tree(read_spans(observed.traces.path), trace_id)
        linked = [span.name for t in tree.linked for span in t.spans]
        done = "influxdb write" in linked and any(n.startswith("state-p") for n in linked)
        return tree if done else None

    # Spans are exported in batches every few seconds.
    wait_until(lambda: traced() is not None, timeout_s=60, interval_s=1.0, what="the trace")
    tree = traced()
    assert tree is not None
    by_name = {span.name: span for span in tree.spans}
    call = by_name["/twinstack.api.ingestion.v1.IngestionService/IngestBatch"]
    assert (call.kind, call.service, call.parent_span_id) == (
        "server",
        "ingestion",
        "00f067aa0ba902b7",
    )
    publish = by_name["TELEMETRY publish"]
    assert (publish.kind, publish.parent_span_id) == ("producer", call.span_id)
    linked = {span.name: span for t in tree.linked for span in t.spans}
    historian = linked["historian process"]
    assert historian.kind == "consumer"
    assert any(link.span_id == publish.span_id for link in historian.links)
    write = linked["influxdb write"]
    assert (write.parent_span_id, write.kind) == (historian.span_id, "client")
    state = next(span for name, span in linked.items() if name.startswith("state-p"))
    assert state.service == "state"
    assert any(link.span_id == publish.span_id for link in state.links)
    assert "influxdb write" in "\n".join(tree.lines())


def test_a_healthy_platform_fires_no_alert(observed: Observed) -> None:
    firing = [
        a["labels"]["alertname"] for a in observed.prometheus.alerts() if a["state"] == "firing"
    ]
    assert firing == []


def test_influxdb_stopped_fires_the_historian_alert(observed: Observed) -> None:
    platform = observed.platform
    platform.influx.stop()
    try:

        def historian_alert() -> dict[str, Any] | None:
            return next(
                (
                    a
                    for a in observed.prometheus.alerts()
                    if a["labels"]["alertname"] == HISTORIAN_ALERT and a["state"] == "firing"
                ),
                None,
            )

        wait_until(
            lambda: historian_alert() is not None,
            timeout_s=120,
            interval_s=1.0,
            what=HISTORIAN_ALERT,
        )
        alert = historian_alert()
        assert alert is not None
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["service"] == "ingestion"
    finally:
        platform.influx.start()
    # Once InfluxDB is back the historian stores again.
    wait_until(
        lambda: bool(
            observed.prometheus.query("sum(rate(twinstack_historian_points_written_total[5s])) > 0")
        ),
        timeout_s=120,
        interval_s=1.0,
        what="the historian storing again",
    )
